"""Read a finished caption run: captions and the 2D embeddings of a (volume, plane, slice), quickly."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from med3dinsight.captioning.outputs import RunPaths
from med3dinsight.io.store import Store


class CaptionRun:
    """captions/<run>/ of a store, indexed by (volume_id, plane, slice_index).

    Local stores memory-map the embedding matrices; remote ones load them once.

    Args:
        store: the store.
        run: the run name.

    Raises:
        FileNotFoundError: the run has not been consolidated (no captions.parquet).
    """

    def __init__(self, store: Store, run: str) -> None:
        self.paths = RunPaths(store, run)
        table_path = self.paths.path("captions.parquet")
        if not store.exists(table_path):
            raise FileNotFoundError(f"no caption run {run!r} in {store.root} ({table_path} is missing)")
        with store.fs.open(table_path, "rb") as f:
            self.table = pq.read_table(f)
        with store.fs.open(self.paths.path("embeddings.json"), "r") as f:
            self.meta: dict[str, Any] = json.load(f)
        self.image_embeddings = self._matrix("image_embeddings.npy")
        self.text_embeddings = self._matrix("text_embeddings.npy")
        self._rows: dict[tuple[str, str, int], list[int]] = {}
        columns = [self.table.column(c).to_pylist() for c in ("volume_id", "plane", "slice_index", "row")]
        keys = zip(*columns, strict=True)
        for volume_id, plane, slice_index, row in keys:
            self._rows.setdefault((volume_id, plane, slice_index), []).append(row)

    def _matrix(self, name: str) -> np.ndarray:
        path = self.paths.path(name)
        if self.paths.store.is_local:
            return np.load(path, mmap_mode="r")
        with self.paths.store.fs.open(path, "rb") as f:
            return np.load(io.BytesIO(f.read()))

    def __len__(self) -> int:
        return self.table.num_rows

    def keys(self) -> list[tuple[str, str, int]]:
        """Every (volume_id, plane, slice_index) with at least one caption."""
        return list(self._rows)

    def rows(self, volume_id: str, plane: str, slice_index: int) -> list[int]:
        """Row numbers (into the table and the matrices) of one slice: one per captioner and prompt."""
        return self._rows.get((volume_id, plane, slice_index), [])

    def get(self, volume_id: str, plane: str, slice_index: int) -> dict[str, Any]:
        """The first row of a slice: its table columns plus "image_embedding" (D_image,) and "text_embedding"
        (D_text,) float32.

        Raises:
            KeyError: no caption for this slice.
        """
        rows = self.rows(volume_id, plane, slice_index)
        if not rows:
            raise KeyError((volume_id, plane, slice_index))
        row = rows[0]
        record = {name: self.table.column(name)[row].as_py() for name in self.table.column_names}
        record["image_embedding"] = np.asarray(self.image_embeddings[row])
        record["text_embedding"] = np.asarray(self.text_embeddings[row])
        return record
