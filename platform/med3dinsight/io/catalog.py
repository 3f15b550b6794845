"""catalog/volumes.parquet: one row per ingest input (ok or rejected), the index later stages read."""

from __future__ import annotations

import io
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from med3dinsight.io.store import Store, atomic_write

_F64_LIST = pa.list_(pa.float64())
CATALOG_SCHEMA = pa.schema(
    [
        ("volume_id", pa.string()),
        ("source", pa.string()),
        ("sha256", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        ("modality", pa.string()),
        ("is_label", pa.bool_()),
        ("shape", pa.list_(pa.int64())),
        ("spacing", _F64_LIST),
        ("origin", _F64_LIST),
        ("direction", _F64_LIST),
        ("native_shape", pa.list_(pa.int64())),
        ("native_spacing", _F64_LIST),
        ("dtype", pa.string()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("mean", pa.float64()),
        ("std", pa.float64()),
        ("p00_5", pa.float64()),
        ("p99_5", pa.float64()),
        ("preprocess_hash", pa.string()),
        ("source_stamp", pa.string()),
        ("path", pa.string()),
    ]
)
COLUMNS = CATALOG_SCHEMA.names


def read_catalog(store: Store) -> list[dict[str, Any]]:
    """All catalog rows of `store` (empty when no ingest has run)."""
    if not store.exists(store.catalog_path):
        return []
    with store.fs.open(store.catalog_path, "rb") as f:
        return pq.read_table(f).to_pylist()


def ok_volume_ids(store: Store) -> list[str]:
    """Ids of the volumes that ingest accepted, in catalog order."""
    return [r["volume_id"] for r in read_catalog(store) if r["status"] == "ok"]


def merge_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of `new` replace rows of `old` with the same source; the rest of `old` stays. Sorted by source."""
    merged = {r["source"]: _project(r) for r in old}
    merged.update({r["source"]: _project(r) for r in new})
    return [merged[k] for k in sorted(merged)]


def write_catalog(store: Store, rows: list[dict[str, Any]]) -> bool:
    """Write the catalog atomically unless it already holds exactly `rows`.

    Returns:
        True when the file was (re)written.
    """
    rows = [_project(r) for r in rows]
    if read_catalog(store) == rows:
        return False
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), buf)
    atomic_write(store, store.catalog_path, buf.getvalue())
    return True


def _project(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in COLUMNS}
