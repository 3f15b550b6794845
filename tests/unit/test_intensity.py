"""The fast integer paths of the intensity policy equal the float reference exactly."""

from __future__ import annotations

import numpy as np
import pytest

from med3dinsight.preprocess.intensity import apply_ct_window, intensity_stats


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32])
@pytest.mark.parametrize("window", [(-1024, 3071), (-1024.5, 3071.5), (-1024.6, 300.4), (-40000, 40000)])
def test_ct_window_matches_the_float_reference(dtype, window):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    low, high = (max(info.min, -5000), min(info.max, 5000)) if info else (-5000, 5000)
    voxels = rng.integers(low, high, (7, 9, 11)).astype(dtype)
    voxels.flat[:4] = [low, high, -1025, 3072] if low < 0 else [low, high, 0, 3072]
    bounds = max(window[0], -32768.0), min(window[1], 32767.0)
    reference = np.rint(np.clip(voxels.astype(np.float64), *bounds)).astype(np.int16)
    out = apply_ct_window(voxels, window)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, reference)


@pytest.mark.parametrize(
    ("dtype", "centre"), [(np.int16, -900), (np.int16, 100), (np.int8, -20), (np.uint8, 100), (np.uint16, 100),
                          (np.float32, -900)]
)  # fmt: skip
def test_stats_match_numpy(dtype, centre):
    rng = np.random.default_rng(1)
    voxels = rng.normal(centre, 40, (13, 17, 19)).clip(-1024, 250).astype(dtype)
    stats = intensity_stats(voxels)
    v = voxels.astype(np.float64)
    expected = {"min": v.min(), "max": v.max(), "mean": v.mean(), "std": v.std(),
                "p00_5": np.percentile(v, 0.5), "p99_5": np.percentile(v, 99.5)}  # fmt: skip
    assert stats == pytest.approx(expected, rel=1e-12, abs=1e-9)


def test_stats_of_a_constant_volume():
    stats = intensity_stats(np.full((2, 3, 4), -7, np.int16))
    assert stats == {"min": -7.0, "max": -7.0, "mean": -7.0, "std": 0.0, "p00_5": -7.0, "p99_5": -7.0}
