"""Label maps paired with their images: ingested as integer label volumes, pairs in catalog/labels.parquet.

Design: the label map goes through `ingest_volume(..., is_label=True)` with the same ingest config as its
image (reorientation, nearest-neighbour resampling, integer voxels, no intensity policy), so both land on
the same voxel grid. The pairing lives in its own table, catalog/labels.parquet, not in volumes.parquet:
the caption stage and the fingerprint read volumes.parquet and must not see label maps as images.

    catalog/labels.parquet  image_volume_id, label_volume_id, image_source, label_source, status (ok |
                            rejected), message, num_classes (max label + 1), shape (z, y, x), modality
                            (of the image)
"""

from __future__ import annotations

import csv
import io
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from med3dinsight.config.ingest import IngestConfig
from med3dinsight.io.discover import discover_sources
from med3dinsight.io.store import Store, atomic_write

LABELS_SCHEMA = pa.schema([
    ("image_volume_id", pa.string()), ("label_volume_id", pa.string()), ("image_source", pa.string()),
    ("label_source", pa.string()), ("status", pa.string()), ("message", pa.string()), ("num_classes", pa.int64()),
    ("shape", pa.list_(pa.int64())), ("modality", pa.string()),
])  # fmt: skip


def labels_path(store: Store) -> str:
    return store.path("catalog", "labels.parquet")


def read_pairs_csv(path: str) -> list[tuple[str, str]]:
    """(image, label) paths from a CSV with columns `image,label` (relative paths: from the CSV's folder)."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"image", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: needs a header with columns image,label")
    return [(os.path.join(base, r["image"]), os.path.join(base, r["label"])) for r in rows]


def ingest_label_pair(image: str, label: str, cfg: IngestConfig, store: Store) -> dict[str, Any]:
    """Ingest one image (skipped when already stored) and its label map; the labels.parquet row."""
    from med3dinsight.ingest.volume import ingest_volume

    row: dict[str, Any] = {"image_source": image, "label_source": label, "status": "rejected"}
    sources = [discover_sources(p, cfg.store_options) for p in (image, label)]
    if any(len(s) != 1 for s in sources):
        return {**row, "message": f"expected one volume each at {image} and {label}"}
    image_row = ingest_volume(sources[0][0], cfg, store)
    label_row = ingest_volume(sources[1][0], cfg, store, is_label=True)
    row.update(image_volume_id=image_row["volume_id"], label_volume_id=label_row["volume_id"])
    for name, r in (("image", image_row), ("label", label_row)):
        if r["status"] != "ok":
            return {**row, "message": f"{name} rejected: {r['reason']}: {r['message']}"}
    if list(image_row["shape"]) != list(label_row["shape"]):
        return {**row, "message": f"label grid {label_row['shape']} differs from image grid {image_row['shape']}"}
    return {**row, "status": "ok", "message": None, "num_classes": int(label_row["max"]) + 1,
            "shape": list(image_row["shape"]), "modality": image_row["modality"]}  # fmt: skip


def ingest_labels(pairs: list[tuple[str, str]], cfg: IngestConfig, store: Store) -> list[dict[str, Any]]:
    """Ingest (image, label map) pairs as Ray tasks and merge them into catalog/labels.parquet.

    Returns:
        One row per pair (LABELS_SCHEMA), in input order.
    """
    import ray

    task = ray.remote(num_cpus=cfg.num_cpus_per_task)(ingest_label_pair)
    rows = ray.get([task.remote(image, label, cfg, store) for image, label in pairs])
    old = {r["label_source"]: r for r in read_label_pairs(store, ok_only=False)}
    old.update({r["label_source"]: r for r in rows})
    table = pa.Table.from_pylist([{k: r.get(k) for k in LABELS_SCHEMA.names} for r in old.values()],
                                 schema=LABELS_SCHEMA)  # fmt: skip
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write(store, labels_path(store), buf.getvalue())
    return rows


def read_label_pairs(store: Store, ok_only: bool = True) -> list[dict[str, Any]]:
    """Rows of catalog/labels.parquet (the ok ones by default), sorted by image volume id."""
    if not store.exists(labels_path(store)):
        return []
    with store.fs.open(labels_path(store), "rb") as f:
        rows = pq.read_table(f).to_pylist()
    rows = [r for r in rows if r["status"] == "ok" or not ok_only]
    return sorted(rows, key=lambda r: (r["image_volume_id"] or "", r["label_source"]))


def sample_label_pairs(folder: str, inputs: list[str]) -> list[tuple[str, str]]:
    """(image, label) pairs of `data.samples.write_sample_dataset` inputs that have a label map."""
    from med3dinsight.data.samples import label_path

    pairs = []
    for image in inputs:
        name = os.path.basename(image.rstrip("/")).split(".")[0]
        label = label_path(folder, name)
        if os.path.isfile(label):
            pairs.append((image, label))
    return pairs
