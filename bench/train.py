"""Training benchmark: a 1-worker Ray Train loop vs a plain torch loop, and the item stream vs the model.

    OMP_NUM_THREADS=1 .venv/bin/python bench/train.py [--steps 30] [--crop 32] [--batch 4]
    .venv/bin/python bench/train.py --gpu          # SwinUNETR-sized backbone, 96^3, bf16, on CUDA

Measured side by side in one run; the last line printed is one JSON object:
- ray_train_vs_plain: steps/s of the same model, batch (fixed in-memory tensors) and step function inside a
  1-worker TorchTrainer vs a plain loop; start-up (trainer start to first step) reported separately as
  ray_train_startup_s. Target >= 0.9. Metrics go to Ray Train once at the end (a report blocks ~2 s).
- loader_vs_model: items/s the Ray Data crop stream delivers (store of synthetic phantoms, crop readers as
  configured by configs/quickstart/pretrain.yaml) vs items/s the plain loop consumes. Target >= 1.
- --gpu: steps/s and GPU busy fraction (CUDA-event time / wall time) of pretraining steps at 96^3 in bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from med3dinsight.config import config_to_dict, load_config
from med3dinsight.config.common import RayConfig
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.train.optim import build_optimizer, build_scheduler
from med3dinsight.train.step import PretrainModule, pretrain_step
from med3dinsight.utils.ray_session import ray_session

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"


def make_cfg(store: str, crop: int, batch: int, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, [CONFIGS / "pretrain.yaml", CONFIGS / "quickstart/pretrain.yaml"], [
        f"store={store}", "experiment=bench", f"model.backbone.img_size=[{crop},{crop},{crop}]",
        f"data.batch_size={batch}", "model.psat.out_dim=16", "loss.max_iter=100", *extra])  # fmt: skip


def fixed_batch(cfg: PretrainConfig, device: str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    b, (d, h, w), e = cfg.data.batch_size, cfg.crop_size, cfg.model.psat.out_dim
    batch = {"image": torch.rand(b, 1, d, h, w, generator=g), "plane": torch.arange(b) % 3,
             "slice_pos": torch.rand(b, generator=g), "image_emb": torch.randn(b, e, generator=g),
             "text_emb": torch.randn(b, e, generator=g)}  # fmt: skip
    return {k: v.to(device) for k, v in batch.items()}


def timed_steps(cfg: PretrainConfig, steps: int, warmup: int = 3, device: str = "cpu") -> dict[str, float]:
    """steps/s of `pretrain_step` on one fixed batch (after `warmup` steps), on `device`."""
    torch.manual_seed(0)
    module = PretrainModule(cfg.model, cfg.loss).to(device)
    optimizer = build_optimizer(module.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, steps + warmup)
    batch = fixed_batch(cfg, device)
    bf16 = device == "cuda"
    for _ in range(warmup):
        pretrain_step(module, optimizer, scheduler, [batch], bf16=bf16, diag_mass=False)
    busy = 0.0
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        pretrain_step(module, optimizer, scheduler, [batch], bf16=bf16, diag_mass=False)
        if device == "cuda":
            end.record()
            end.synchronize()
            busy += start.elapsed_time(end) / 1000
    wall = time.perf_counter() - t0
    out = {"steps_per_s": steps / wall}
    if device == "cuda":
        out.update(gpu_busy=busy / wall, gpu_mem_gb=torch.cuda.max_memory_allocated() / 2**30)
    return out


def _ray_worker(config: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    t_start = time.time()
    cfg = load_config(PretrainConfig, data=config["cfg"])
    result = timed_steps(cfg, config["steps"])
    # a file, not ray.train.report: a worker's last report is not always collected before it exits
    Path(config["out"]).write_text(json.dumps({**result, "first_step_time": t_start}))


def bench_ray_vs_plain(cfg: PretrainConfig, steps: int) -> dict[str, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    plain = timed_steps(cfg, steps)["steps_per_s"]
    out = Path(tempfile.mkdtemp(prefix="m3d-bench-")) / "ray.json"
    t0 = time.time()
    trainer = TorchTrainer(
        _ray_worker, train_loop_config={"cfg": config_to_dict(cfg), "steps": steps, "out": str(out)},
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(name="bench-train", storage_path=tempfile.mkdtemp(prefix="m3d-bench-")),
    )  # fmt: skip
    trainer.fit()
    metrics = json.loads(out.read_text())
    ray_rate = metrics["steps_per_s"]
    return {"plain_steps_per_s": plain, "ray_train_steps_per_s": ray_rate, "ray_train_vs_plain": ray_rate / plain,
            "ray_train_startup_s": metrics["first_step_time"] - t0}  # fmt: skip


def bench_loader(cfg: PretrainConfig, items: int) -> float:
    """Items/s the crop stream delivers to one consumer, from its first batch on."""
    from med3dinsight.train.pretrain_data import PretrainDatasetFactory

    ds = PretrainDatasetFactory(config_to_dict(cfg))()
    count, t0 = 0, None
    for batch in ds.iter_torch_batches(batch_size=cfg.data.batch_size, prefetch_batches=2):
        if t0 is None:
            t0 = time.perf_counter()
            continue
        count += len(batch["index"])
        if count >= items:
            break
    return count / (time.perf_counter() - t0)


def build_store(root: Path) -> str:
    from med3dinsight.config.ingest import IngestConfig
    from med3dinsight.data.samples import write_sample_dataset
    from med3dinsight.ingest.pipeline import run_ingest
    from med3dinsight.io.store import Store
    from med3dinsight.train.synthetic import write_synthetic_captions

    inputs = write_sample_dataset(str(root / "samples"), size=64, include_mni=False)
    (root / "inputs.txt").write_text("\n".join(inputs) + "\n")
    overrides = [f"input={root / 'inputs.txt'}", f"store={root / 'store'}", "ray.progress_bars=false"]
    cfg = load_config(IngestConfig, [CONFIGS / "ingest.yaml", CONFIGS / "quickstart/ingest.yaml"], overrides)
    run_ingest(cfg)
    write_synthetic_captions(Store(str(root / "store")), dim=16, slices_per_plane=8)
    return str(root / "store")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--crop", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    if args.gpu:
        cfg = make_cfg("unused", 96, 2, "model.backbone.name=swin_unetr", "model.backbone.feature_size=48",
                       "model.psat.dim=768", "model.psat.num_queries=300", "model.psat.num_layers=6",
                       "model.psat.num_heads=8", "model.psat.ffn_dim=3072", "model.psat.num_slice_bins=128",
                       "model.backbone.gradient_checkpointing=false")  # fmt: skip
        timing = timed_steps(cfg, args.steps, 5, "cuda")
        result = {"gpu": torch.cuda.get_device_name(), "crop": 96, "batch": 2, **timing}
        print(json.dumps(result))
        return
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    session = ray_session(RayConfig(num_cpus=2, progress_bars=False))
    with tempfile.TemporaryDirectory(prefix="m3d-bench-train-") as tmp, session:
        store = build_store(Path(tmp))
        cfg = make_cfg(store, args.crop, args.batch, "data.small_volumes=pad")
        result: dict[str, Any] = {"crop": args.crop, "batch": args.batch, "steps": args.steps}
        result.update(bench_ray_vs_plain(cfg, args.steps))
        loader = bench_loader(cfg, 40 * args.batch)
        model = result["plain_steps_per_s"] * args.batch
        result.update(loader_items_per_s=loader, model_items_per_s=model, loader_vs_model=loader / model)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
