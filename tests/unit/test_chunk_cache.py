"""The decoded-chunk cache returns exactly what zarr returns, and stays within its byte budget."""

from pathlib import Path

import numpy as np
import pytest
import zarr

from med3dinsight.io.chunk_cache import ChunkCache, read_box


@pytest.fixture
def array(tmp_path: Path) -> tuple[zarr.Array, np.ndarray]:
    data = np.random.default_rng(0).integers(-1000, 1000, (37, 50, 45)).astype(np.int16)
    z = zarr.create_array(tmp_path / "a.zarr", shape=data.shape, chunks=(16, 16, 16), dtype=data.dtype)
    z[:] = data
    return z, data


@pytest.mark.parametrize("max_bytes", [0, 16**3 * 2 * 3, 1 << 30])
def test_random_boxes_match_numpy(array: tuple[zarr.Array, np.ndarray], max_bytes: int) -> None:
    z, data = array
    cache = ChunkCache(max_bytes)
    rng = np.random.default_rng(1)
    for _ in range(40):
        low = np.asarray([rng.integers(0, s) for s in data.shape])
        high = np.asarray([rng.integers(lo + 1, s + 1) for lo, s in zip(low, data.shape, strict=True)])
        out = read_box(z, low, high, cache, ("a", 0))
        np.testing.assert_array_equal(out, data[low[0] : high[0], low[1] : high[1], low[2] : high[2]])
        assert cache.nbytes <= max_bytes
        out[...] = 0  # the caller owns its copy; the cache must not change
    np.testing.assert_array_equal(read_box(z, np.zeros(3, int), np.asarray(data.shape), cache, ("a", 0)), data)


def test_hits_do_not_read_zarr(array: tuple[zarr.Array, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    z, data = array
    cache = ChunkCache(1 << 30)
    low, high = np.asarray([3, 5, 7]), np.asarray([30, 40, 44])
    read_box(z, low, high, cache, ("a", 0))
    monkeypatch.setattr(type(z), "__getitem__", lambda *a: pytest.fail("cache miss"))
    np.testing.assert_array_equal(read_box(z, low + 1, high - 1, cache, ("a", 0)), data[4:29, 6:39, 8:43])


def test_negative_budget() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        ChunkCache(-1)
