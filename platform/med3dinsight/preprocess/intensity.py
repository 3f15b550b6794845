"""Intensity policy per modality, modality inference and the intensity statistics of a stored volume.

Pure numpy functions on voxel arrays of any shape (the ingest stage passes (z, y, x) arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CT_MIN_BELOW_HU = -500.0
"""`auto` modality: an image whose minimum is below this is CT (air is about -1000 HU), else MR."""
MAX_STATS_VOXELS = 1 << 24
"""Intensity statistics use a regular stride sample once a volume has more voxels than this."""
INT16_RANGE = (float(np.iinfo(np.int16).min), float(np.iinfo(np.int16).max))


def infer_modality(configured: str, dicom_modality: str | None, min_value: float) -> str:
    """The modality whose intensity policy applies: "CT" or "MR".

    Args:
        configured: preprocess.modality: "auto", "CT" or "MR".
        dicom_modality: the DICOM Modality tag (e.g. "CT", "MR"), None for other formats.
        min_value: the smallest voxel value of the image.
    """
    if configured != "auto":
        return configured
    if dicom_modality in ("CT", "MR"):
        return dicom_modality
    return "CT" if min_value < CT_MIN_BELOW_HU else "MR"


def apply_ct_window(voxels: np.ndarray, window: Sequence[float]) -> np.ndarray:
    """Clip HU to `window` [low, high] (also to the int16 range) and round: int16, same shape."""
    low = max(float(window[0]), INT16_RANGE[0])
    high = min(float(window[1]), INT16_RANGE[1])
    if np.issubdtype(voxels.dtype, np.integer):
        # Integers clip exactly to the rounded bounds: no float64 copy of the volume.
        low_int, high_int = int(np.rint(low)), int(np.rint(high))
        info = np.iinfo(voxels.dtype)
        if info.min <= low_int and high_int <= info.max:
            return np.clip(voxels, low_int, high_int).astype(np.int16)
    return np.rint(np.clip(voxels, low, high)).astype(np.int16)


def apply_mr_percentiles(voxels: np.ndarray, percentiles: Sequence[float]) -> tuple[np.ndarray, list[float]]:
    """Clip to percentiles of the nonzero voxels and scale that range to [0, 1]: float32, same shape.

    Zero voxels are background in MR (air, skull-stripped or masked regions); including them would move
    the low percentile to 0 for most head scans.

    Returns:
        The scaled voxels and the [low, high] clip values in input units (all zeros when the nonzero
        voxels are constant; the caller refuses that as a constant volume).
    """
    nonzero = voxels[voxels != 0]
    if nonzero.size == 0:
        return np.zeros(voxels.shape, np.float32), [0.0, 0.0]
    low, high = (float(v) for v in np.percentile(nonzero, [percentiles[0], percentiles[1]]))
    if not high > low:
        return np.zeros(voxels.shape, np.float32), [low, high]
    scaled = (np.clip(voxels.astype(np.float32), low, high) - np.float32(low)) / np.float32(high - low)
    return scaled.astype(np.float32, copy=False), [low, high]


def intensity_stats(voxels: np.ndarray) -> dict[str, Any]:
    """min, max, mean, std, p00_5 and p99_5 of `voxels` as floats (nnU-Net-style fingerprint inputs).

    Integer volumes of at most 16 bits are summarised exactly from their histogram (no sort, no float
    copy). Other volumes over MAX_STATS_VOXELS use a regular stride sample (deterministic) for
    mean/std/percentiles; min and max are always exact.
    """
    flat = voxels.reshape(-1)
    low, high = flat.min(), flat.max()
    if np.issubdtype(flat.dtype, np.integer) and flat.dtype.itemsize <= 2:
        return _histogram_stats(flat, int(low), int(high))
    sample = flat[:: -(-flat.size // MAX_STATS_VOXELS)] if flat.size > MAX_STATS_VOXELS else flat
    sample64 = sample.astype(np.float64)
    p_low, p_high = np.percentile(sample64, [0.5, 99.5])
    return {
        "min": float(low),
        "max": float(high),
        "mean": float(sample64.mean()),
        "std": float(sample64.std()),
        "p00_5": float(p_low),
        "p99_5": float(p_high),
    }


def _histogram_stats(flat: np.ndarray, low: int, high: int) -> dict[str, Any]:
    """intensity_stats of small integers: counts per value; percentiles as numpy's "linear" method."""
    info = np.iinfo(flat.dtype)
    # bincount over the same bits read as unsigned (no widening copy); a signed type's negative half
    # lands above its positive half, so roll it in front to index counts by value - info.min.
    counts = np.bincount(flat.view(f"u{flat.dtype.itemsize}"), minlength=1 << (8 * flat.dtype.itemsize))
    if info.min < 0:
        counts = np.roll(counts, -info.min)
    counts = counts[low - info.min : high - info.min + 1]
    values = np.arange(low, high + 1, dtype=np.float64)
    n = flat.size
    mean = float(counts @ values) / n
    var = float(counts @ np.square(values - mean)) / n
    cumulative = np.cumsum(counts)

    def order_statistic(rank: int) -> float:  # the rank-th smallest voxel (0-based)
        return float(low + np.searchsorted(cumulative, rank, side="right"))

    def percentile(q: float) -> float:
        position = (n - 1) * q / 100
        below = int(np.floor(position))
        a, b = order_statistic(below), order_statistic(min(below + 1, n - 1))
        return a + (b - a) * (position - below)

    return {
        "min": float(low),
        "max": float(high),
        "mean": mean,
        "std": var**0.5,
        "p00_5": percentile(0.5),
        "p99_5": percentile(99.5),
    }
