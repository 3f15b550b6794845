"""captions/<run>/ in the store: atomic part files while the job runs, then one consolidated table.

    captions/<run>/parts/<time>-<uuid>.parquet  one file per written batch (PART_SCHEMA), published atomically
    captions/<run>/captions.parquet             one row per (volume_id, plane, slice_index, captioner_id,
                                                prompt_id), sorted; column `row` indexes the matrices below
    captions/<run>/image_embeddings.npy         float32 (N, D_image)
    captions/<run>/text_embeddings.npy          float32 (N, D_text)
    captions/<run>/embeddings.json              encoder ids, widths, N
    captions/<run>/run.json                     the embedder of this run (a run never mixes two)
    captions/<run>/plans/<volume_id>.<slices_id>.json  planned (plane, slice_index) of a volume (so that a
                                                rerun of the foreground strategy knows them without the voxels)
    captions/<run>/config.yaml, gallery.html

A crash loses at most the batches in flight; a rerun skips the keys that have an error-free row.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from med3dinsight.io.store import Store, atomic_write

KEY = ("volume_id", "plane", "slice_index", "captioner_id", "prompt_id")
PART_SCHEMA = pa.schema(
    [
        ("volume_id", pa.string()), ("plane", pa.string()), ("slice_index", pa.int32()),
        ("captioner_id", pa.string()), ("prompt_id", pa.string()),
        ("array_axis", pa.int8()), ("position", pa.float32()), ("modality", pa.string()), ("window", pa.string()),
        ("prompt", pa.string()), ("caption", pa.string()), ("quality", pa.string()), ("error", pa.string()),
        ("generated_tokens", pa.int32()), ("caption_seconds", pa.float32()),
        ("backend", pa.string()), ("model", pa.string()), ("revision", pa.string()), ("model_hash", pa.string()),
        ("generation", pa.string()), ("seed", pa.int64()),
        ("image_encoder", pa.string()), ("text_encoder", pa.string()),
        ("image_embedding", pa.list_(pa.float32())), ("text_embedding", pa.list_(pa.float32())),
        ("thumbnail_png", pa.binary()), ("created_at", pa.float64()),
    ]
)  # fmt: skip
TABLE_COLUMNS = [n for n in PART_SCHEMA.names if n not in ("image_embedding", "text_embedding", "thumbnail_png")]


@dataclass(frozen=True, slots=True)
class RunPaths:
    """Paths of one caption run in a store."""

    store: Store
    run: str

    def path(self, *parts: str) -> str:
        return self.store.path("captions", self.run, *parts)

    @property
    def parts(self) -> str:
        return self.path("parts")


def table_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def write_part(paths: RunPaths, rows: list[dict[str, Any]]) -> str:
    """Publish `rows` (PART_SCHEMA columns) as one new part file; returns its path."""
    now = time.time()
    rows = [{**r, "created_at": now} for r in rows]
    path = f"{paths.parts}/{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}-{uuid.uuid4().hex[:12]}.parquet"
    atomic_write(paths.store, path, table_bytes(pa.Table.from_pylist(rows, schema=PART_SCHEMA)))
    return path


def part_files(paths: RunPaths) -> list[str]:
    """Published part files (leftover .tmp files of a crashed write are ignored)."""
    if not paths.store.exists(paths.parts):
        return []
    return sorted(p for p in paths.store.fs.ls(paths.parts, detail=False) if p.endswith(".parquet"))


def read_parts(paths: RunPaths, columns: list[str] | None = None) -> pa.Table:
    """All part rows (optionally only `columns`), in part-file order."""
    tables = []
    for path in part_files(paths):
        with paths.store.fs.open(path, "rb") as f:
            tables.append(pq.read_table(f, columns=columns))
    if not tables:
        schema = PART_SCHEMA if columns is None else pa.schema([PART_SCHEMA.field(c) for c in columns])
        return schema.empty_table()
    return pa.concat_tables(tables)


def finished_keys(paths: RunPaths, captioner_id: str, prompt_id: str) -> dict[str, set[tuple[str, int]]]:
    """volume_id -> {(plane, slice_index)} that already have an error-free row for this captioner and prompt."""
    table = read_parts(paths, ["volume_id", "plane", "slice_index", "captioner_id", "prompt_id", "error"])
    done: dict[str, set[tuple[str, int]]] = {}
    for r in table.to_pylist():
        if r["error"] is None and r["captioner_id"] == captioner_id and r["prompt_id"] == prompt_id:
            done.setdefault(r["volume_id"], set()).add((r["plane"], r["slice_index"]))
    return done


def latest_rows(table: pa.Table) -> list[dict[str, Any]]:
    """One row per KEY: an error-free one before a failed one, then the newest; sorted by KEY."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in table.to_pylist():
        key = tuple(r[k] for k in KEY)
        old = best.get(key)
        if old is None or (r["error"] is None, r["created_at"]) > (old["error"] is None, old["created_at"]):
            best[key] = r
    return [best[k] for k in sorted(best)]


def consolidate(paths: RunPaths, encoders: dict[str, Any]) -> list[dict[str, Any]]:
    """Write captions.parquet, the two embedding matrices and embeddings.json from the parts.

    Args:
        paths: the run.
        encoders: {"image_encoder", "text_encoder", "normalize", ...} recorded in embeddings.json.

    Returns:
        The consolidated rows (with embeddings and thumbnails), in table order.
    """
    rows = latest_rows(read_parts(paths))
    store = paths.store
    widths = [len(rows[0]["image_embedding"]), len(rows[0]["text_embedding"])] if rows else [0, 0]
    for name, width in zip(("image_embedding", "text_embedding"), widths, strict=True):
        matrix = np.asarray([r[name] for r in rows], dtype=np.float32).reshape(len(rows), width)
        buf = io.BytesIO()
        np.save(buf, matrix)
        atomic_write(store, paths.path(f"{name}s.npy"), buf.getvalue())
    table = pa.Table.from_pylist([{c: r[c] for c in TABLE_COLUMNS} for r in rows],
                                 schema=pa.schema([PART_SCHEMA.field(c) for c in TABLE_COLUMNS]))  # fmt: skip
    table = table.append_column("row", pa.array(np.arange(len(rows), dtype=np.int64)))
    atomic_write(store, paths.path("captions.parquet"), table_bytes(table))
    meta = {**encoders, "image_width": widths[0], "text_width": widths[1], "num_rows": len(rows)}
    atomic_write(store, paths.path("embeddings.json"), json.dumps(meta, indent=2, sort_keys=True).encode())
    return rows


def plan_path(paths: RunPaths, volume_id: str, slices_id: str) -> str:
    return paths.path("plans", f"{volume_id}.{slices_id}.json")


def write_plan(paths: RunPaths, volume_id: str, slices_id: str, keys: list[tuple[str, int]]) -> None:
    """Record the planned (plane, slice_index) of a volume under a slicing config id."""
    atomic_write(paths.store, plan_path(paths, volume_id, slices_id), json.dumps(sorted(keys)).encode())


def read_plan(paths: RunPaths, volume_id: str, slices_id: str) -> frozenset[tuple[str, int]] | None:
    """The recorded plan, or None when this volume was never planned with this slicing config."""
    path = plan_path(paths, volume_id, slices_id)
    if not paths.store.exists(path):
        return None
    with paths.store.fs.open(path, "r") as f:
        return frozenset((plane, int(index)) for plane, index in json.load(f))


def check_run_embedder(paths: RunPaths, record: dict[str, Any]) -> None:
    """Record the run's embedder on first use; refuse a different one later (the matrices must not mix).

    Raises:
        ValueError: the run was embedded with other encoders.
    """
    path = paths.path("run.json")
    if paths.store.exists(path):
        with paths.store.fs.open(path, "r") as f:
            old = json.load(f)
        if old["embedder_id"] != record["embedder_id"]:
            raise ValueError(
                f"run {paths.run!r} was embedded with {old['image_encoder']} / {old['text_encoder']}; "
                f"embedder.* now names {record['image_encoder']} / {record['text_encoder']}: use a new `run` name"
            )
        return
    atomic_write(paths.store, path, json.dumps(record, indent=2, sort_keys=True).encode())
