"""Where training crops go, and where the captioned slice lies inside them (pure numpy).

Conventions: array axes (z, y, x) of the stored volume; a captioned slice is index `slice_index` along
array axis `array_axis` (captions.parquet columns). Ingest reorients every volume to one canonical
orientation (LPS by default), so an array axis is the same physical direction in every volume and
positions measured in array order are comparable across the dataset.

Slice position fed to PSAT (relative, in [0, 1), binned as floor(p * num_slice_bins)):
    crop mode    p = (slice_index - crop_start[array_axis]) / crop_size[array_axis]
    volume mode  p = slice_index / volume_shape[array_axis]
A flip of the crop along `array_axis` mirrors the slice inside the crop: its in-crop index k becomes
crop_size - 1 - k (crop mode), or slice_index becomes shape - 1 - slice_index (volume mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from med3dinsight.config.train import AugmentConfig


class CropTooLargeError(ValueError):
    """The crop does not fit inside a volume along some axis."""


@dataclass(frozen=True, slots=True)
class CropSpec:
    """One training item's geometry and augmentation draw."""

    start_zyx: tuple[int, int, int]
    """First voxel of the crop; negative or beyond the volume only when the volume is smaller (padded)."""
    flips: tuple[bool, bool, bool]
    """Mirror the crop along array axes z, y, x."""
    slice_position: float
    """Relative position of the captioned slice, in [0, 1) (module docstring)."""


def check_crop_fits(volume_id: str, shape_zyx: Sequence[int], crop_zyx: Sequence[int]) -> None:
    """Raise `CropTooLargeError` naming the volume when `crop_zyx` exceeds `shape_zyx` along any axis."""
    if any(c > s for c, s in zip(crop_zyx, shape_zyx, strict=True)):
        raise CropTooLargeError(
            f"crop {list(crop_zyx)} (model.backbone.img_size, z y x) is larger than volume {volume_id} of shape "
            f"{list(shape_zyx)}: use a smaller crop, resample to a finer spacing at ingest, or set "
            "data.small_volumes=skip|pad"
        )


def crop_start_range(shape: int, crop: int, slice_index: int | None = None) -> tuple[int, int]:
    """Inclusive range [lo, hi] of crop starts along one axis.

    The crop stays inside the volume when it fits (else the volume stays inside the crop, padded), and
    contains `slice_index` when one is given.

    Args:
        shape: voxels of the volume along the axis.
        crop: voxels of the crop along the axis.
        slice_index: an index the crop must contain, in [0, shape).
    """
    lo, hi = min(0, shape - crop), max(0, shape - crop)
    if slice_index is not None:
        if not 0 <= slice_index < shape:
            raise ValueError(f"slice_index {slice_index} outside the axis of {shape} voxels")
        lo, hi = max(lo, slice_index - crop + 1), min(hi, slice_index)
    return lo, hi


def sample_crop(
    rng: np.random.Generator,
    shape_zyx: Sequence[int],
    crop_zyx: Sequence[int],
    array_axis: int,
    slice_index: int,
    flip_prob: float = 0.0,
    position_mode: str = "crop",
) -> CropSpec:
    """A uniformly random crop containing the captioned slice, its flips and the slice's relative position.

    Args:
        rng: random generator (one per item, so items are reproducible).
        shape_zyx: volume shape.
        crop_zyx: crop size.
        array_axis: array axis (0 z, 1 y, 2 x) normal to the captioned slice.
        slice_index: slice index along `array_axis`.
        flip_prob: probability of a flip along each axis.
        position_mode: "crop" or "volume" (module docstring).
    """
    start = []
    for axis in range(3):
        must_contain = slice_index if axis == array_axis else None
        lo, hi = crop_start_range(int(shape_zyx[axis]), int(crop_zyx[axis]), must_contain)
        start.append(int(rng.integers(lo, hi + 1)))
    flips = tuple(bool(f) for f in rng.random(3) < flip_prob)
    position = slice_position_in(
        start[array_axis], int(crop_zyx[array_axis]), int(shape_zyx[array_axis]), slice_index,
        flips[array_axis], position_mode,
    )  # fmt: skip
    return CropSpec((start[0], start[1], start[2]), flips, position)  # type: ignore[arg-type]


def slice_position_in(start: int, crop: int, shape: int, slice_index: int, flipped: bool, mode: str) -> float:
    """Relative position in [0, 1) of a slice, in the crop or in the volume, after an optional flip."""
    if mode == "crop":
        k = slice_index - start
        if not 0 <= k < crop:
            raise ValueError(f"slice {slice_index} is not inside the crop [{start}, {start + crop})")
        return ((crop - 1 - k) if flipped else k) / crop
    if mode == "volume":
        return ((shape - 1 - slice_index) if flipped else slice_index) / shape
    raise ValueError(f"position mode must be crop or volume, got {mode!r}")


def normalize_intensity(x_zyx: np.ndarray, modality: str | None, ct_window: Sequence[float]) -> np.ndarray:
    """Stored voxels -> float32 in [0, 1]: CT HU clipped to `ct_window` and scaled; MR clipped to [0, 1]."""
    x = x_zyx.astype(np.float32, copy=False)
    if modality == "CT":
        lo, hi = float(ct_window[0]), float(ct_window[1])
        return np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return np.clip(x, 0.0, 1.0)


def augment(x_zyx: np.ndarray, flips: Sequence[bool], rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Flips, then intensity scale/shift, gamma and Gaussian noise on a [0, 1] crop (float32 out).

    Args:
        x_zyx: normalised crop.
        flips: mirror along (z, y, x), as drawn by `sample_crop`.
        rng: the item's random generator.
        cfg: augmentation strengths (zero disables each).
    """
    axes = tuple(a for a in range(3) if flips[a])
    x = np.flip(x_zyx, axes) if axes else x_zyx
    x = np.ascontiguousarray(x, dtype=np.float32)
    if cfg.gamma > 0:
        x = np.power(np.clip(x, 0.0, 1.0), np.float32(np.exp(rng.uniform(-cfg.gamma, cfg.gamma))))
    if cfg.intensity_scale > 0:
        x = x * np.float32(rng.uniform(1 - cfg.intensity_scale, 1 + cfg.intensity_scale))
    if cfg.intensity_shift > 0:
        x = x + np.float32(rng.uniform(-cfg.intensity_shift, cfg.intensity_shift))
    if cfg.noise_std > 0:
        x = x + rng.normal(0.0, cfg.noise_std, x.shape).astype(np.float32)
    return x.astype(np.float32, copy=False)


def item_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of stream item `index` (a pure function of seed and index)."""
    return np.random.default_rng([seed, index])


def epoch_order(seed: int, epoch: int, num_entries: int) -> np.ndarray:
    """The order in which the caption entries are visited in `epoch` (a seeded permutation)."""
    return np.random.default_rng([seed, epoch, 1]).permutation(num_entries)
