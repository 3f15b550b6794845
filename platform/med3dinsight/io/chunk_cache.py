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
    low = [int(v) for v in low_zyx]
    high = [int(v) for v in high_zyx]
    if cache is None or cache.max_bytes == 0:
        return array[tuple(map(slice, low, high))]
    step = [int(c) for c in array.chunks]
    spans = [range(lo // c, (hi - 1) // c + 1) for lo, hi, c in zip(low, high, step, strict=True)]
    # Plain ints from here on: a 96^3 crop of 32^3 chunks touches 64 of them, and numpy scalar
    # arithmetic per chunk would cost more than copying the voxels.
    chunks = {idx: cache.get((*key, idx)) for idx in itertools.product(*spans)}
    missing = [idx for idx, chunk in chunks.items() if chunk is None]
    if missing:
        m_low = [min(idx[a] for idx in missing) * step[a] for a in range(3)]
        m_high = [min((max(idx[a] for idx in missing) + 1) * step[a], array.shape[a]) for a in range(3)]
        fetched = array[tuple(map(slice, m_low, m_high))]
        for idx in missing:
            c_low = [i * c - m for i, c, m in zip(idx, step, m_low, strict=True)]
            chunk = fetched[tuple(slice(a, min(a + c, n)) for a, c, n in zip(c_low, step, fetched.shape, strict=True))]
            chunk = chunk.copy()
            chunk.flags.writeable = False
            chunks[idx] = chunk
            cache.put((*key, idx), chunk)
    out = np.empty([hi - lo for lo, hi in zip(low, high, strict=True)], dtype=array.dtype)
    for idx, chunk in chunks.items():
        dst, src = [], []
        for i, c, lo, hi in zip(idx, step, low, high, strict=True):
            c_low = i * c
            a, b = max(c_low, lo), min(c_low + c, hi)
            dst.append(slice(a - lo, b - lo))
            src.append(slice(a - c_low, b - c_low))
        out[tuple(dst)] = chunk[tuple(src)]
    return out
