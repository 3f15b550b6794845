"""A 2D slice to an 8-bit RGB image: CT window presets, MR percentile windows, aspect-true resizing (pure)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image


def ct_window_bounds(center: float, width: float) -> tuple[float, float]:
    """[low, high] HU of a window given as (center, width) in HU, DICOM style (low = center - width / 2)."""
    return center - width / 2.0, center + width / 2.0


def mr_window_bounds(volume: np.ndarray, percentiles: Sequence[float]) -> tuple[float, float]:
    """[low, high] at `percentiles` of the nonzero voxels of an MR volume (all voxels when none is nonzero).

    Computed once per volume so that every slice of it shares one window.
    """
    values = volume[volume != 0]
    if values.size == 0:
        values = volume.ravel()
    low, high = np.percentile(values.astype(np.float64), [percentiles[0], percentiles[1]])
    return float(low), float(high)


def apply_window(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linear map of [low, high] onto 0..255 with clipping; uint8 with the shape of `image`.

    A window with high <= low (a constant volume) maps everything to 0.
    """
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    scaled = (image.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb_square(gray_RC: np.ndarray, pixel_mm: tuple[float, float], size: int) -> np.ndarray:
    """Fit an 8-bit slice into a black size x size RGB canvas, keeping its physical aspect ratio.

    Args:
        gray_RC: uint8 image (rows, columns).
        pixel_mm: (row_mm, col_mm) spacing of `gray_RC`.
        size: side of the output in pixels.

    Returns:
        uint8 array (size, size, 3); the slice is centred and scaled (bilinear) so that its longer physical
        side spans the canvas.
    """
    height_mm, width_mm = gray_RC.shape[0] * pixel_mm[0], gray_RC.shape[1] * pixel_mm[1]
    scale = size / max(height_mm, width_mm)
    new_h = min(size, max(1, round(height_mm * scale)))
    new_w = min(size, max(1, round(width_mm * scale)))
    resized = np.asarray(Image.fromarray(gray_RC).resize((new_w, new_h), Image.Resampling.BILINEAR))
    canvas = np.zeros((size, size), np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = resized
    return np.repeat(canvas[:, :, None], 3, axis=2)


def render_slice(
    slice_RC: np.ndarray, pixel_mm: tuple[float, float], window: tuple[float, float], size: int
) -> np.ndarray:
    """Window then fit a slice: uint8 RGB (size, size, 3). `window` is [low, high] in stored units."""
    return to_rgb_square(apply_window(slice_RC, *window), pixel_mm, size)


def png_bytes(image_HWC: np.ndarray, size: int | None = None) -> bytes:
    """PNG encoding of a uint8 RGB image, optionally downscaled to size x size (thumbnails)."""
    picture = Image.fromarray(image_HWC)
    if size is not None and size != picture.width:
        picture = picture.resize((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    picture.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
