"""From preprocessed voxels to encoder inputs: the training input policy and the crop / sliding-window policy.

The export's preprocessing record says what the network saw in training. Pretraining writes
`{"ingest": <ingest record>, "input": {"ct_window_hu": [lo, hi]}, "crop": {"size_zyx": [D, H, W]}, ...}`
and fine-tuning adds `"finetune_input": {"ct_window_hu": ..., "crop_zyx": ...}`, which wins when present (the
weights were last trained on it). Missing sections fall back to the backbone's img_size and the training
default window. Intensities are normalised by the training code itself (`train.crops.normalize_intensity`).
Arrays are (z, y, x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from med3dinsight.config.train import IntensityInputConfig
from med3dinsight.train.crops import normalize_intensity


def model_input_policy(record: dict[str, Any]) -> dict[str, Any]:
    """The crop size (z, y, x) and CT window (HU) an export expects, with defaults filled in.

    Args:
        record: the parsed encoder.json of an export.

    Raises:
        ValueError: on a malformed crop size or window.
    """
    pre = record.get("preprocessing") or {}
    finetune, pretrain = pre.get("finetune_input") or {}, pre.get("input") or {}
    crop = finetune.get("crop_zyx") or (pre.get("crop") or {}).get("size_zyx") or record["backbone"]["img_size"]
    window = finetune.get("ct_window_hu") or pretrain.get("ct_window_hu") or IntensityInputConfig().ct_window
    crop, window = [int(n) for n in crop], [float(v) for v in window]
    if len(crop) != 3 or any(n < 1 for n in crop):
        raise ValueError(f"the export's crop size must be 3 positive ints (z, y, x), got {crop}")
    if len(window) != 2 or not window[0] < window[1]:
        raise ValueError(f"the export's ct_window_hu must be [low, high] with low < high, got {window}")
    return {"crop_size": crop, "ct_window_hu": window}


def scale_intensity(voxels: np.ndarray, modality: str | None, ct_window_hu: Sequence[float]) -> np.ndarray:
    """Network input values (float32 in [0, 1]) of stored voxels, exactly as in training."""
    return normalize_intensity(voxels, modality, ct_window_hu)


def axis_starts(length: int, crop: int, overlap: float, count: int | None = None) -> list[int]:
    """Window starts along one axis: evenly spread from 0 to length - crop, or one centred window.

    Args:
        length: voxels along the axis.
        crop: window size.
        overlap: fraction of `crop` shared by neighbours (sets the count when `count` is None).
        count: force this many windows (>= 1).
    """
    if length <= crop:
        return [(length - crop) // 2]  # negative: the window is padded on both sides
    if count is None:
        step = max(1, math.floor(crop * (1.0 - overlap)))
        count = math.ceil((length - crop) / step) + 1
    if count == 1:
        return [(length - crop) // 2]
    return [round(i * (length - crop) / (count - 1)) for i in range(count)]


def window_starts(
    shape_zyx: Sequence[int], crop_zyx: Sequence[int], mode: str, overlap: float, max_windows: int
) -> list[tuple[int, int, int]]:
    """Start voxel (z, y, x) of every window of a volume under the crop policy.

    center: one window at the centre. sliding_window: a grid of overlapping windows covering the volume;
    when the grid would exceed `max_windows`, the axis with most windows loses one until it fits (the
    windows then cover the volume with gaps, evenly spread, first and last at the edges).
    """
    if mode == "center":
        return [tuple((n - c) // 2 for n, c in zip(shape_zyx, crop_zyx, strict=True))]  # type: ignore[misc]
    counts = [len(axis_starts(n, c, overlap)) for n, c in zip(shape_zyx, crop_zyx, strict=True)]
    while math.prod(counts) > max_windows:
        counts[counts.index(max(counts))] -= 1
    per_axis = [axis_starts(n, c, overlap, k) for n, c, k in zip(shape_zyx, crop_zyx, counts, strict=True)]
    return [(z, y, x) for z in per_axis[0] for y in per_axis[1] for x in per_axis[2]]


def extract_window(volume: np.ndarray, start_zyx: Sequence[int], crop_zyx: Sequence[int], fill: float) -> np.ndarray:
    """volume[start : start + crop] with the parts outside the volume set to `fill` (float32)."""
    out = np.full(tuple(crop_zyx), fill, dtype=np.float32)
    src, dst = [], []
    for start, crop, n in zip(start_zyx, crop_zyx, volume.shape, strict=True):
        low, high = max(start, 0), min(start + crop, n)
        if high <= low:
            return out
        src.append(slice(low, high))
        dst.append(slice(low - start, high - start))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def windows_array(
    volume: np.ndarray, starts: Sequence[Sequence[int]], crop_zyx: Sequence[int], fill: float
) -> np.ndarray:
    """The windows stacked as encoder input (W, 1, D, H, W) float32."""
    return np.stack([extract_window(volume, s, crop_zyx, fill) for s in starts])[:, None]


def stitch_logits(
    logits_WKDHW: np.ndarray, starts_zyx: Sequence[Sequence[int]], shape_zyx: Sequence[int]
) -> np.ndarray:
    """Average overlapping window logits into the volume (K, Z, Y, X); voxels no window covers get class 0."""
    num_classes, crop = logits_WKDHW.shape[1], logits_WKDHW.shape[2:]
    total = np.zeros((num_classes, *shape_zyx), np.float32)
    count = np.zeros(tuple(shape_zyx), np.float32)
    for logits, start in zip(logits_WKDHW, starts_zyx, strict=True):
        src, dst = [], []
        for s, c, n in zip(start, crop, shape_zyx, strict=True):
            low, high = max(s, 0), min(s + c, n)
            src.append(slice(low - s, high - s))
            dst.append(slice(low, high))
        total[(slice(None), *dst)] += logits[(slice(None), *src)]
        count[tuple(dst)] += 1
    uncovered = count == 0
    total /= np.maximum(count, 1)
    total[0][uncovered] = 1.0  # background wins where nothing was predicted
    return total
