"""Crop placement, the slice inside the crop, flips and augmentation (hand-checked cases)."""

import numpy as np
import pytest

from med3dinsight.config.train import AugmentConfig
from med3dinsight.train.crops import (
    CropTooLargeError,
    augment,
    check_crop_fits,
    crop_start_range,
    epoch_order,
    item_rng,
    normalize_intensity,
    sample_crop,
    slice_position_in,
)


@pytest.mark.parametrize(
    ("shape", "crop", "slice_index", "expected"),
    [
        (10, 4, None, (0, 6)),  # anywhere inside
        (10, 4, 0, (0, 0)),  # first slice: the crop must start at 0
        (10, 4, 9, (6, 6)),  # last slice: the crop must end at the volume's end
        (10, 4, 5, (2, 5)),  # slice 5 at crop positions 3..0
        (10, 10, 3, (0, 0)),  # crop = volume
        (3, 5, None, (-2, 0)),  # smaller volume: it stays inside the (padded) crop
        (3, 5, 2, (-2, 0)),
    ],
)
def test_crop_start_range(shape: int, crop: int, slice_index: int | None, expected: tuple[int, int]) -> None:
    assert crop_start_range(shape, crop, slice_index) == expected


def test_crop_start_range_rejects_a_slice_outside_the_axis() -> None:
    with pytest.raises(ValueError, match="outside"):
        crop_start_range(10, 4, 10)


@pytest.mark.parametrize(("axis", "index"), [(0, 0), (0, 19), (1, 11), (2, 27)])
def test_sampled_crops_contain_the_slice_and_stay_inside(axis: int, index: int) -> None:
    shape, crop = (20, 24, 28), (8, 8, 16)
    for i in range(50):
        spec = sample_crop(item_rng(0, i), shape, crop, axis, index)
        assert all(0 <= s <= n - c for s, n, c in zip(spec.start_zyx, shape, crop, strict=True))
        k = index - spec.start_zyx[axis]
        assert 0 <= k < crop[axis] and spec.slice_position == k / crop[axis]


def test_slice_position_modes_and_flips() -> None:
    assert slice_position_in(4, 8, 20, 6, False, "crop") == 2 / 8
    assert slice_position_in(4, 8, 20, 6, True, "crop") == 5 / 8  # in-crop index 2 -> 8 - 1 - 2
    assert slice_position_in(4, 8, 20, 6, False, "volume") == 6 / 20
    assert slice_position_in(4, 8, 20, 6, True, "volume") == 13 / 20
    with pytest.raises(ValueError, match="not inside the crop"):
        slice_position_in(4, 8, 20, 12, False, "crop")
    with pytest.raises(ValueError, match="crop or volume"):
        slice_position_in(4, 8, 20, 6, False, "middle")


def test_flip_along_the_slice_axis_mirrors_the_slice_in_the_crop() -> None:
    spec = sample_crop(item_rng(1, 0), (20, 24, 28), (8, 8, 8), 0, 10, flip_prob=1.0)
    assert spec.flips == (True, True, True)
    crop = np.arange(8, dtype=np.float32)[:, None, None] * np.ones((8, 8, 8), np.float32) / 8
    k = 10 - spec.start_zyx[0]
    flipped = augment(crop, spec.flips, item_rng(1, 0), AugmentConfig())
    # the plane that held in-crop slice k is now at 8 - 1 - k, where the position says it is
    assert np.allclose(flipped[round(spec.slice_position * 8)], crop[k])


def test_items_are_reproducible_and_epochs_visit_every_entry() -> None:
    a = sample_crop(item_rng(3, 17), (20, 24, 28), (8, 8, 8), 1, 5, 0.5)
    b = sample_crop(item_rng(3, 17), (20, 24, 28), (8, 8, 8), 1, 5, 0.5)
    assert a == b
    assert sorted(epoch_order(0, 2, 7)) == list(range(7))
    assert not np.array_equal(epoch_order(0, 1, 50), epoch_order(0, 2, 50))


def test_crop_larger_than_volume_names_the_volume() -> None:
    check_crop_fits("v1", (32, 32, 32), (32, 16, 8))
    with pytest.raises(CropTooLargeError, match=r"larger than volume v1 of shape \[20, 64, 64\]"):
        check_crop_fits("v1", (20, 64, 64), (32, 32, 32))


def test_normalize_intensity() -> None:
    ct = np.array([-2000, -1000, 0, 1000, 3000], np.int16)
    assert np.allclose(normalize_intensity(ct, "CT", [-1000, 1000]), [0, 0, 0.5, 1, 1])
    assert np.allclose(normalize_intensity(np.array([-0.5, 0.25, 2.0]), "MR", [-1000, 1000]), [0, 0.25, 1])


def test_augment_off_is_identity_and_on_changes_intensities() -> None:
    x = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    assert np.array_equal(augment(x, (False,) * 3, item_rng(0, 0), AugmentConfig()), x)
    strong = AugmentConfig(intensity_scale=0.5, intensity_shift=0.2, gamma=0.5, noise_std=0.1)
    y = augment(x, (False,) * 3, item_rng(0, 0), strong)
    assert y.dtype == np.float32 and y.shape == x.shape and not np.allclose(x, y)
