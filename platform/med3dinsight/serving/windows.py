"""From preprocessed voxels to encoder inputs: intensity scaling and the crop / sliding-window policy.

The export's `preprocessing.model_input` section (written by pretraining next to the ingest record) says
what the network saw in training: `crop_size` [D, H, W] (default: the backbone's img_size) and `scale`
("unit": CT window mapped to [0, 1], MR kept as stored in [0, 1]; "none": stored values as float32).
Pure numpy; arrays are (z, y, x).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

SCALES = ("unit", "none")


def model_input_policy(record: dict[str, Any]) -> dict[str, Any]:
    """The crop size and scale an export expects, with defaults filled in.

    Args:
        record: the parsed encoder.json of an export.

    Raises:
        ValueError: on an unknown scale or a malformed crop size.
    """
    section = dict(record.get("preprocessing", {}).get("model_input") or {})
    crop = [int(n) for n in section.get("crop_size", record["backbone"]["img_size"])]
    scale = section.get("scale", "unit")
    if len(crop) != 3 or any(n < 1 for n in crop):
        raise ValueError(f"preprocessing.model_input.crop_size must be 3 positive ints, got {crop}")
    if scale not in SCALES:
        raise ValueError(f"preprocessing.model_input.scale must be one of {SCALES}, got {scale!r}")
    return {"crop_size": crop, "scale": scale}


def scale_intensity(voxels: np.ndarray, intensity: dict[str, Any], scale: str) -> np.ndarray:
    """Network input values (float32) of stored voxels, given the volume's intensity attribute.

    Args:
        voxels: stored voxels (CT int16 HU clipped to the window; MR float32 in [0, 1]).
        intensity: the volume's `intensity` attribute (policy, and window for CT).
        scale: "unit" or "none" (see the module docstring).
    """
    if scale == "unit" and intensity.get("policy") == "ct_window":
        low, high = (float(v) for v in intensity["window"])
        low, high = max(low, -32768.0), min(high, 32767.0)
        return ((voxels.astype(np.float32) - np.float32(low)) / np.float32(high - low)).astype(np.float32)
    return voxels.astype(np.float32, copy=False)


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
