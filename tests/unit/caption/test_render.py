"""Windowing and rendering: CT presets, MR percentiles, aspect-true square RGB images."""

import io

import numpy as np
import pytest
from PIL import Image

from med3dinsight.captioning.render import (
    apply_window,
    ct_window_bounds,
    mr_window_bounds,
    png_bytes,
    render_slice,
    to_rgb_square,
)
from med3dinsight.config.caption import RenderConfig


@pytest.mark.parametrize(
    ("preset", "hu", "expected"),
    [
        ("soft_tissue", [-160, 40, 240, -1000, 1000], [0, 128, 255, 0, 255]),
        ("lung", [-1350, -600, 150], [0, 128, 255]),
        ("bone", [-500, 400, 1300], [0, 128, 255]),
        ("brain", [0, 40, 80], [0, 128, 255]),
    ],
)
def test_ct_presets(preset: str, hu: list[float], expected: list[int]) -> None:
    center, width = RenderConfig().ct_windows[preset]
    got = apply_window(np.asarray(hu, np.int16), *ct_window_bounds(center, width))
    assert got.dtype == np.uint8 and got.tolist() == expected


def test_mr_percentiles_ignore_background_zeros() -> None:
    volume = np.zeros((4, 10, 10), np.float32)
    volume[:, :5] = np.linspace(0.1, 1.0, 200).reshape(4, 5, 10)
    low, high = mr_window_bounds(volume, [0.0, 100.0])
    assert (low, high) == pytest.approx((0.1, 1.0))
    assert apply_window(volume, low, high)[volume > 0].min() == 0
    assert mr_window_bounds(np.zeros((2, 2, 2)), [1, 99]) == (0.0, 0.0)


def test_constant_window_is_black() -> None:
    assert apply_window(np.ones((3, 3)), 1.0, 1.0).max() == 0


def test_square_rgb_keeps_physical_aspect() -> None:
    gray = np.full((10, 40), 200, np.uint8)  # 10 rows x 2 mm = 20 mm high, 40 cols x 1 mm = 40 mm wide
    rgb = to_rgb_square(gray, (2.0, 1.0), 64)
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()
    rows = np.flatnonzero(rgb[:, 32, 0])
    assert len(rows) == 32 and rows[0] == 16  # 20 mm of 40 mm -> half the canvas, centred
    assert np.flatnonzero(rgb[32, :, 0]).size == 64


def test_render_and_png_round_trip() -> None:
    slice_rc = np.linspace(-1000, 1000, 30 * 30).reshape(30, 30)
    rgb = render_slice(slice_rc, (1.0, 1.0), (-160.0, 240.0), 48)
    assert rgb.shape == (48, 48, 3)
    thumb = Image.open(io.BytesIO(png_bytes(rgb, 16)))
    assert thumb.size == (16, 16) and thumb.mode == "RGB"
