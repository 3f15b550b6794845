"""A bounded LRU cache of decoded Zarr chunks, shared by every volume a process opens.

Training draws many random crops from the same volumes; each crop touches a few chunks that the previous
crops already decoded. Published volumes never change (a new config writes a new volume id), so a
decoded chunk stays valid for the life of the process.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict

import numpy as np
import zarr

DEFAULT_CACHE_MB = int(os.environ.get("MED3D_CHUNK_CACHE_MB", "512"))


class ChunkCache:
    """Least-recently-used decoded chunks, at most `max_bytes` in all (0 disables caching)."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._chunks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._chunks)

    def get(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            chunk = self._chunks.get(key)
            if chunk is not None:
                self._chunks.move_to_end(key)
            return chunk

    def put(self, key: tuple, chunk: np.ndarray) -> None:
        if chunk.nbytes > self.max_bytes:
            return
        with self._lock:
            if key in self._chunks:
                return
            self._chunks[key] = chunk
            self.nbytes += chunk.nbytes
            while self.nbytes > self.max_bytes:
                _, evicted = self._chunks.popitem(last=False)
                self.nbytes -= evicted.nbytes

    def clear(self) -> None:
        with self._lock:
            self._chunks.clear()
            self.nbytes = 0


DEFAULT_CHUNK_CACHE = ChunkCache(DEFAULT_CACHE_MB << 20)


def read_box(
    array: zarr.Array, low_zyx: np.ndarray, high_zyx: np.ndarray, cache: ChunkCache | None, key: tuple
) -> np.ndarray:
    """`array[low:high]` (all inside the array), through `cache`.

    Missing chunks are fetched in one zarr read of their chunk-aligned bounding box (zarr decodes those
    chunks concurrently), then cut into chunks and cached; the box is assembled from cached chunks.

    Args:
        array: a 3D zarr array (z, y, x).
        low_zyx, high_zyx: the box, 0 <= low < high <= shape.
        cache: decoded-chunk cache, or None to read straight through zarr.
        key: identifies `array` among everything in the cache (e.g. (volume path, level)).

    Returns:
        A new array of shape high - low and the array's dtype.
    """
    box = tuple(slice(int(a), int(b)) for a, b in zip(low_zyx, high_zyx, strict=True))
    if cache is None or cache.max_bytes == 0:
        return array[box]
    chunk_shape = np.asarray(array.chunks, dtype=np.int64)
    shape = np.asarray(array.shape, dtype=np.int64)
    first, last = low_zyx // chunk_shape, (high_zyx - 1) // chunk_shape
    indices = list(itertools.product(*(range(int(a), int(b) + 1) for a, b in zip(first, last, strict=True))))
    chunks = {idx: cache.get((*key, idx)) for idx in indices}
    missing = np.asarray([idx for idx, chunk in chunks.items() if chunk is None], dtype=np.int64)
    if len(missing):
        m_low = missing.min(axis=0) * chunk_shape
        m_high = np.minimum((missing.max(axis=0) + 1) * chunk_shape, shape)
        fetched = array[tuple(slice(int(a), int(b)) for a, b in zip(m_low, m_high, strict=True))]
        for idx in map(tuple, missing):
            c_low = np.asarray(idx) * chunk_shape - m_low
            c_high = np.minimum(c_low + chunk_shape, m_high - m_low)
            chunk = fetched[tuple(slice(int(a), int(b)) for a, b in zip(c_low, c_high, strict=True))].copy()
            chunk.flags.writeable = False
            chunks[idx] = chunk
            cache.put((*key, idx), chunk)
    out = np.empty(tuple(int(v) for v in high_zyx - low_zyx), dtype=array.dtype)
    for idx, chunk in chunks.items():
        c_low = np.asarray(idx) * chunk_shape
        lo = np.maximum(c_low, low_zyx)
        hi = np.minimum(c_low + chunk_shape, high_zyx)
        dst = tuple(slice(int(a), int(b)) for a, b in zip(lo - low_zyx, hi - low_zyx, strict=True))
        src = tuple(slice(int(a), int(b)) for a, b in zip(lo - c_low, hi - c_low, strict=True))
        out[dst] = chunk[src]
    return out
