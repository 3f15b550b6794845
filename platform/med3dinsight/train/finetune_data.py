"""Labelled data for fine-tuning: the labelled volume list, its seeded split, in-memory volumes and crops.

Fine-tuning sets are small (tens to hundreds of labelled volumes), so each worker holds its shard of the
training volumes (volume i goes to rank i % world_size) and of the validation volumes in memory, already
normalised, and draws random crops from them; no streaming pipeline is needed.

Shape legend: D/H/W voxels (z, y, x) of a crop or volume.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.io.catalog import read_catalog
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume
from med3dinsight.train.crops import augment, crop_start_range, normalize_intensity
from med3dinsight.train.labels import read_label_pairs


@dataclass(frozen=True, slots=True)
class LabelledItem:
    """One labelled volume: its image, and either a label volume (segmentation) or a class (classification)."""

    volume_id: str
    label_volume_id: str | None = None
    target: int | None = None


def split_items(items: Sequence[LabelledItem], val_fraction: float, seed: int,
                labelled_fraction: float = 1.0) -> tuple[list[LabelledItem], list[LabelledItem]]:  # fmt: skip
    """Seeded (train, val) split by volume; train keeps `labelled_fraction` of its items (at least one).

    Raises:
        ValueError: with fewer than 2 items (no split possible).
    """
    if len(items) < 2:
        raise ValueError(f"fine-tuning needs at least 2 labelled volumes for a train/val split, got {len(items)}")
    order = np.random.default_rng(seed).permutation(len(items))
    num_val = min(len(items) - 1, max(1, round(len(items) * val_fraction)))
    val = [items[i] for i in sorted(order[:num_val])]
    train = [items[i] for i in order[num_val:]]
    train = sorted(train[: max(1, round(len(train) * labelled_fraction))], key=lambda it: it.volume_id)
    return train, val


def labelled_items(cfg: FinetuneConfig, store: Store) -> tuple[list[LabelledItem], list[str]]:
    """The labelled volumes of the task and the class names.

    Raises:
        ValueError: no label pairs / CSV rows that name an ingested volume, or labels outside num_classes.
    """
    if cfg.task == "segmentation":
        pairs = read_label_pairs(store)
        if not pairs:
            raise ValueError(f"no label maps in {store.root} (catalog/labels.parquet): ingest them with "
                             "train.labels.ingest_labels first")  # fmt: skip
        too_many = [p for p in pairs if p["num_classes"] > cfg.num_classes]
        if too_many:
            worst = too_many[0]
            raise ValueError(f"label map {worst['label_source']} has labels up to {worst['num_classes'] - 1} "
                             f"but num_classes={cfg.num_classes}")  # fmt: skip
        keep = cfg.data.modalities
        items = [LabelledItem(p["image_volume_id"], p["label_volume_id"]) for p in pairs
                 if not keep or p.get("modality") in keep]  # fmt: skip
        return items, list(cfg.data.class_names) or [f"class_{i}" for i in range(cfg.num_classes)]
    items, names = classification_items(cfg, store)
    return _keep_modalities(items, cfg, store), names


def _keep_modalities(items: list[LabelledItem], cfg: FinetuneConfig, store: Store) -> list[LabelledItem]:
    if not cfg.data.modalities:
        return items
    modality = {r["volume_id"]: r["modality"] for r in read_catalog(store)}
    return [it for it in items if modality.get(it.volume_id) in cfg.data.modalities]


def classification_items(cfg: FinetuneConfig, store: Store) -> tuple[list[LabelledItem], list[str]]:
    """(volume_id, class) items from `data.labels_csv` (columns label and volume_id or source)."""
    with open(cfg.data.labels_csv or "", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "label" not in rows[0] or not {"volume_id", "source"} & set(rows[0]):
        raise ValueError(f"{cfg.data.labels_csv}: needs columns label and volume_id or source")
    by_source = {r["source"]: r["volume_id"] for r in read_catalog(store) if r["status"] == "ok"}
    known = set(by_source.values())
    names = list(cfg.data.class_names) or sorted({r["label"] for r in rows})
    if len(names) != cfg.num_classes:
        raise ValueError(f"{cfg.data.labels_csv} has {len(names)} classes {names}, num_classes={cfg.num_classes}")
    items = []
    for r in rows:
        volume_id = r.get("volume_id") or by_source.get(r.get("source", ""))
        if volume_id not in known:
            raise ValueError(f"{cfg.data.labels_csv}: {r} names no ingested volume")
        if r["label"] not in names:
            raise ValueError(f"{cfg.data.labels_csv}: label {r['label']!r} not in data.class_names {names}")
        items.append(LabelledItem(volume_id, target=names.index(r["label"])))
    return items, names


def load_arrays(store: Store, item: LabelledItem, ct_window: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None]:
    """The normalised image (D, H, W) float32 and, for segmentation, its label map (D, H, W) int64."""
    volume = open_volume(store, item.volume_id, cache=None)
    image = normalize_intensity(volume.level(0)[...], volume.modality, ct_window)
    label = None
    if item.label_volume_id is not None:
        label = open_volume(store, item.label_volume_id, cache=None).level(0)[...].astype(np.int64)
    return image, label


def random_crop(rng: np.random.Generator, image: np.ndarray, label: np.ndarray | None, crop: Sequence[int],
                foreground_prob: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """A crop of `crop` voxels (zero-padded where the volume is smaller), optionally centred on foreground."""
    start = []
    fg = label is not None and rng.random() < foreground_prob and bool(label.any())
    centre = np.argwhere(label > 0)[rng.integers(int((label > 0).sum()))] if fg else None  # type: ignore[operator]
    for axis in range(3):
        lo, hi = crop_start_range(image.shape[axis], int(crop[axis]))
        if centre is not None:
            want = int(centre[axis]) - int(crop[axis]) // 2 + int(rng.integers(-(crop[axis] // 4), crop[axis] // 4 + 1))
            start.append(int(np.clip(want, lo, hi)))
        else:
            start.append(int(rng.integers(lo, hi + 1)))
    return _cut(image, start, crop), None if label is None else _cut(label, start, crop)


def centre_crop(image: np.ndarray, crop: Sequence[int]) -> np.ndarray:
    """The centred crop (zero-padded where the volume is smaller)."""
    start = [(s - c) // 2 for s, c in zip(image.shape, crop, strict=True)]
    return _cut(image, start, crop)


def _cut(array: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    out = np.zeros(tuple(int(s) for s in size), dtype=array.dtype)
    src = tuple(slice(max(0, a), min(n, a + s)) for a, s, n in zip(start, size, array.shape, strict=True))
    dst = tuple(slice(sl.start - a, sl.stop - a) for sl, a in zip(src, start, strict=True))
    out[dst] = array[src]
    return out


def training_batch(rng: np.random.Generator, volumes: Sequence[tuple[np.ndarray, np.ndarray | None]],
                   targets: Sequence[int | None], cfg: FinetuneConfig) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """A batch of augmented crops (B, 1, D, H, W) and targets: label crops (B, 1, D, H, W) or classes (B,)."""
    images, labels = [], []
    crop = cfg.backbone.img_size
    for _ in range(cfg.data.batch_size):
        k = int(rng.integers(len(volumes)))
        image, label = volumes[k]
        x, y = random_crop(rng, image, label, crop, cfg.data.foreground_prob)
        flips = tuple(bool(f) for f in rng.random(3) < cfg.data.augment.flip_prob)
        x = augment(x, flips, rng, cfg.data.augment)
        images.append(x[None])
        if y is not None:
            axes = tuple(a for a in range(3) if flips[a])
            labels.append(np.ascontiguousarray(np.flip(y, axes) if axes else y)[None])
        else:
            labels.append(np.int64(targets[k]))
    return np.stack(images), np.stack(labels)
