"""A caption run with synthetic 2D embeddings, in the caption stage's layout (captioning/outputs.py).

For tests, benchmarks and dry runs of pretraining without a captioning model. The "image embedding" of a
slice is a fixed random projection of its 8x8 block-mean thumbnail (plus plane and position), the "text
embedding" another one: both depend on the slice content, so the alignment objective is learnable.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa

from med3dinsight.captioning.outputs import PART_SCHEMA, TABLE_COLUMNS, RunPaths, table_bytes
from med3dinsight.captioning.slicing import sample_slices
from med3dinsight.io.catalog import ok_volume_ids, read_catalog
from med3dinsight.io.store import Store, atomic_write
from med3dinsight.io.volume_reader import open_volume
from med3dinsight.models.psat import PLANES

THUMB = 8


def _thumbnail(slice_RC: np.ndarray) -> np.ndarray:
    rows = np.array_split(np.arange(slice_RC.shape[0]), THUMB)
    cols = np.array_split(np.arange(slice_RC.shape[1]), THUMB)
    return np.asarray([[slice_RC[np.ix_(r, c)].mean() if r.size and c.size else 0.0 for c in cols] for r in rows])


def write_synthetic_captions(
    store: Store, run: str = "default", dim: int = 32, slices_per_plane: int = 4, seed: int = 0,
    qualities: tuple[str, ...] = ("ok",),
) -> int:  # fmt: skip
    """Write captions/<run>/ (captions.parquet, image/text_embeddings.npy, embeddings.json) for every
    ingested image volume of `store`.

    Args:
        store: a store with ingested volumes.
        run: caption run name.
        dim: embedding width (set model.psat.out_dim to it).
        slices_per_plane: evenly spaced slices per plane and volume.
        seed: seed of the random projections.
        qualities: quality flags assigned to rows in turn (to exercise the quality filter).

    Returns:
        The number of rows written.
    """
    rng = np.random.default_rng(seed)
    w_image = rng.normal(size=(dim, THUMB * THUMB + 4)).astype(np.float32)
    w_text = rng.normal(size=(dim, THUMB * THUMB + 4)).astype(np.float32)
    labels = {r["volume_id"] for r in read_catalog(store) if r.get("is_label")}
    rows, image, text = [], [], []
    for volume_id in ok_volume_ids(store):
        if volume_id in labels:
            continue
        volume = open_volume(store, volume_id)
        voxels = volume.level(0)[...].astype(np.float32)
        scale = float(np.abs(voxels).max()) or 1.0
        for ref in sample_slices(voxels, volume.direction, volume_id, PLANES, slices_per_plane, "uniform"):
            slice_RC = np.take(voxels, ref.slice_index, axis=ref.array_axis) / scale
            onehot = np.eye(3, dtype=np.float32)[PLANES.index(ref.plane)]
            features = np.concatenate([_thumbnail(slice_RC).ravel(), onehot, [ref.position]]).astype(np.float32)
            image.append(np.tanh(w_image @ features))
            text.append(np.tanh(w_text @ features))
            rows.append({
                "volume_id": volume_id, "plane": ref.plane, "slice_index": ref.slice_index,
                "captioner_id": "synthetic", "prompt_id": "synthetic", "array_axis": ref.array_axis,
                "position": ref.position, "modality": volume.modality or "unknown",
                "caption": f"synthetic {ref.plane} slice {ref.slice_index}",
                "quality": qualities[len(rows) % len(qualities)],
                "model": "synthetic", "image_encoder": "synthetic-projection", "text_encoder": "synthetic-projection",
            })  # fmt: skip
    paths = RunPaths(store, run)
    schema = pa.schema([PART_SCHEMA.field(c) for c in TABLE_COLUMNS])
    table = pa.Table.from_pylist([{c: r.get(c) for c in TABLE_COLUMNS} for r in rows], schema=schema)
    table = table.append_column("row", pa.array(np.arange(len(rows), dtype=np.int64)))
    for name, matrix in (("image_embeddings.npy", image), ("text_embeddings.npy", text)):
        buf = io.BytesIO()
        np.save(buf, np.asarray(matrix, dtype=np.float32).reshape(len(rows), dim))
        atomic_write(store, paths.path(name), buf.getvalue())
    meta = {"image_encoder": "synthetic-projection", "text_encoder": "synthetic-projection",
            "image_width": dim, "text_width": dim, "num_rows": len(rows)}  # fmt: skip
    atomic_write(store, paths.path("embeddings.json"), json.dumps(meta, indent=2).encode())
    atomic_write(store, paths.path("captions.parquet"), table_bytes(table))
    return len(rows)
