"""The pretraining item stream on Ray Data: global item indices -> crop-reader actors -> training items.

Item i of the stream is a pure function of (data.seed, i): epoch e = i // N visits the N caption entries in
a seeded permutation; the item's generator (seed, i) draws the crop, its flips and the intensity
augmentation. The stream resumes at a data position P (items consumed so far) by starting at index P.

`PretrainDatasetFactory` is handed to `TorchTrainer(datasets={"train": factory})`. Ray Train calls it each
time the worker group starts (first start, restart after a failure, resubmission), and it reads the data
position that the last checkpoint recorded (runs/<experiment>/data_position.json), so a restarted run goes
on with new items instead of replaying the first ones. Items prefetched but not trained on when a worker
died are skipped, not replayed.

Shape legend: B items, D/H/W crop voxels (z, y, x), E 2D embedding width.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from med3dinsight.config import load_config
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import ZarrVolume, open_volume
from med3dinsight.train.caption_index import CaptionIndex, load_caption_index
from med3dinsight.train.crops import augment, epoch_order, item_rng, normalize_intensity, sample_crop

POSITION_FILE = "data_position.json"


def index_for(cfg: PretrainConfig) -> CaptionIndex:
    """The caption index of a pretraining config (raises early on missing captions or too-small volumes)."""
    store = Store(cfg.store, cfg.store_options)
    d = cfg.data
    return load_caption_index(store, d.caption_run, d.quality, cfg.crop_size, d.small_volumes)


def make_item(index: int, cid: CaptionIndex, cfg: PretrainConfig, volumes: dict[int, ZarrVolume]) -> dict[str, Any]:
    """Training item `index` of the stream.

    Returns:
        image (1, D, H, W) float32 in [0, 1], plane () int64, slice_pos () float32, image_emb and text_emb
        (E,) float32, index () int64.
    """
    n = len(cid)
    entry = int(epoch_order(cfg.data.seed, index // n, n)[index % n])
    rng = item_rng(cfg.data.seed, index)
    v = int(cid.volume_N[entry])
    shape = cid.shapes_V3[v]
    spec = sample_crop(rng, shape, cfg.crop_size, int(cid.axis_N[entry]), int(cid.slice_N[entry]),
                       cfg.data.augment.flip_prob, cfg.data.slice_position)  # fmt: skip
    if v not in volumes:
        volumes[v] = open_volume(Store(cfg.store, cfg.store_options), cid.volume_ids[v])
    raw = volumes[v].read_crop(spec.start_zyx, cfg.crop_size)
    x = normalize_intensity(raw, cid.modalities[v], cfg.data.input.ct_window)
    x = augment(x, spec.flips, rng, cfg.data.augment)
    row = int(cid.row_N[entry])
    return {
        "image": x[None],
        "plane": np.int64(cid.plane_N[entry]),
        "slice_pos": np.float32(spec.slice_position),
        "image_emb": np.asarray(cid.image_emb[row], dtype=np.float32),
        "text_emb": np.asarray(cid.text_emb[row], dtype=np.float32),
        "index": np.int64(index),
    }


class PretrainReader:
    """Ray Data actor: a batch of stream indices -> a batch of training items (stacked arrays).

    Args:
        cfg_dict: the pretraining config as a plain dict.
        offset: stream index of the dataset's first row.
    """

    def __init__(self, cfg_dict: dict[str, Any], offset: int) -> None:
        import torch

        torch.set_num_threads(1)
        self.cfg = load_config(PretrainConfig, data=cfg_dict)
        self.offset = offset
        self.index = index_for(self.cfg)
        self.volumes: dict[int, ZarrVolume] = {}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [make_item(int(i) + self.offset, self.index, self.cfg, self.volumes) for i in batch["data"]]
        return {key: np.stack([item[key] for item in items]) for key in items[0]}


def read_data_position(store: Store, experiment: str) -> int:
    """Items consumed by the latest checkpoint of `experiment` (0 before the first one)."""
    path = store.path("runs", experiment, POSITION_FILE)
    if not store.exists(path):
        return 0
    with store.fs.open(path, "r") as f:
        return int(json.load(f)["items"])


def write_data_position(store: Store, experiment: str, items: int, step: int) -> None:
    """Record the data position of the checkpoint being reported (rank 0 only)."""
    payload = json.dumps({"items": items, "step": step}).encode()
    store.fs.pipe_file(store.path("runs", experiment, POSITION_FILE), payload)


def items_per_step(cfg: PretrainConfig, world_size: int) -> int:
    """Items all workers consume in one optimiser step."""
    return cfg.data.batch_size * cfg.grad_accum * max(1, world_size)


class PretrainDatasetFactory:
    """Callable that builds the stream from the recorded data position (see the module docstring).

    Args:
        cfg_dict: the pretraining config as a plain dict.
    """

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        self.cfg_dict = cfg_dict

    def __call__(self) -> Any:
        import ray.data

        cfg = load_config(PretrainConfig, data=self.cfg_dict)
        offset = read_data_position(Store(cfg.store, cfg.store_options), cfg.experiment)
        # enough items for every remaining step at the largest worker count (+ one step of slack); the loop
        # stops at max_steps, and streaming_split(equal=True) gives every worker the same number of rows
        total = (cfg.max_steps + 1) * items_per_step(cfg, cfg.scaling.num_workers)
        block = cfg.data.reader_batch_size
        # from_numpy keeps the index blocks in the object store: no read tasks to compete for the CPUs
        ds = ray.data.from_numpy(np.array_split(np.arange(total, dtype=np.int64), max(1, total // (4 * block))))
        lo, hi = cfg.data.reader_actors
        return ds.map_batches(
            PretrainReader,
            fn_constructor_kwargs={"cfg_dict": self.cfg_dict, "offset": offset},
            batch_size=block,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi),
            num_cpus=cfg.data.reader_cpus,
        )
