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

    Volumes over MAX_STATS_VOXELS use a regular stride sample (deterministic) for mean/std/percentiles;
    min and max are always exact.
    """
    flat = voxels.reshape(-1)
    sample = flat[:: -(-flat.size // MAX_STATS_VOXELS)] if flat.size > MAX_STATS_VOXELS else flat
    sample64 = sample.astype(np.float64)
    p_low, p_high = np.percentile(sample64, [0.5, 99.5])
    return {
        "min": float(flat.min()),
        "max": float(flat.max()),
        "mean": float(sample64.mean()),
        "std": float(sample64.std()),
        "p00_5": float(p_low),
        "p99_5": float(p_high),
    }
