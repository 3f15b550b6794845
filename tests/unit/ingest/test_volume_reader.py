"""The reader API: crops in voxel and physical coordinates against numpy slicing of the SimpleITK array."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import zarr

from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import ZarrVolume, open_volume

from .ingest_helpers import file_source, rotation_z, write_image


@pytest.fixture
def oblique_volume(tmp_path, store: Store, wide_window_cfg, ct_image) -> tuple[ZarrVolume, sitk.Image]:
    """A stored oblique CT volume (no resampling, window wide enough) and the SimpleITK image it came from."""
    image = sitk.Image(ct_image)
    image.SetDirection(rotation_z(25.0))
    row = ingest_volume(file_source(write_image(image, tmp_path / "oblique.mha")), wide_window_cfg, store)
    assert row["status"] == "ok", row["message"]
    return open_volume(store, row["volume_id"]), image


CROPS = [
    ((0, 0, 0), (8, 16, 16)),  # one chunk
    ((3, 5, 7), (10, 20, 21)),  # across chunk borders
    ((-4, -3, 30), (8, 8, 10)),  # partly outside on three sides
    ((15, 25, 33), (9, 9, 9)),  # partly beyond the far corner
    ((40, 0, 0), (2, 2, 2)),  # entirely outside
]


@pytest.mark.parametrize(("start", "size"), CROPS)
def test_voxel_crop_matches_numpy_slicing_with_padding(oblique_volume, start, size):
    volume, image = oblique_volume
    reference = sitk.GetArrayFromImage(image)
    padded = np.pad(reference, 64, constant_values=-999)
    expected = padded[tuple(slice(a + 64, a + 64 + n) for a, n in zip(start, size, strict=True))]
    np.testing.assert_array_equal(volume.read_crop(start, size, fill_value=-999), expected)


def test_default_padding_is_the_background(oblique_volume):
    volume, _ = oblique_volume
    assert volume.background == volume.attrs["stats"]["min"]
    assert np.all(volume.read_crop((-5, 0, 0), (2, 2, 2)) == volume.background)


def test_level_crop_matches_the_level_array(oblique_volume):
    volume, _ = oblique_volume
    level = volume.level(1)[...]
    np.testing.assert_array_equal(volume.read_crop((2, 3, 4), (5, 6, 7), level=1), level[2:7, 3:9, 4:11])


@pytest.mark.parametrize("index_xyz", [(10, 12, 9), (0, 0, 0), (35, 27, 19)])
def test_physical_crop_is_centred_on_the_voxel_at_that_point(oblique_volume, index_xyz):
    volume, image = oblique_volume
    point = image.TransformIndexToPhysicalPoint(index_xyz)
    crop = volume.read_crop_physical(point, (5, 7, 9), fill_value=-999)
    i, j, k = index_xyz
    expected = np.pad(sitk.GetArrayFromImage(image), 10, constant_values=-999)[
        k + 10 - 2 : k + 10 + 3, j + 10 - 3 : j + 10 + 4, i + 10 - 4 : i + 10 + 5
    ]
    np.testing.assert_array_equal(crop, expected)


def test_physical_index_round_trip_uses_the_full_direction(oblique_volume):
    volume, image = oblique_volume
    for index_xyz in [(1, 2, 3), (30, 4, 17)]:
        point = image.TransformIndexToPhysicalPoint(index_xyz)
        np.testing.assert_allclose(volume.physical_to_index(point), index_xyz[::-1], atol=1e-9)
        np.testing.assert_allclose(volume.index_to_physical(index_xyz[::-1]), point, atol=1e-9)


def test_to_sitk_round_trips_geometry_and_voxels(oblique_volume):
    volume, image = oblique_volume
    stored = volume.to_sitk()
    np.testing.assert_allclose(stored.GetDirection(), image.GetDirection(), atol=1e-12)
    assert stored.GetSpacing() == image.GetSpacing() and stored.GetOrigin() == image.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(stored), sitk.GetArrayFromImage(image))
    coarse = volume.to_sitk(level=1)
    assert coarse.GetSize() == tuple(-(-n // 2) for n in image.GetSize())
    centre_of_first_block = image.TransformContinuousIndexToPhysicalPoint((0.5, 0.5, 0.5))
    np.testing.assert_allclose(coarse.GetOrigin(), centre_of_first_block, atol=1e-9)


def test_properties_and_errors(oblique_volume):
    volume, image = oblique_volume
    assert volume.shape == sitk.GetArrayViewFromImage(image).shape
    assert volume.modality == "CT" and volume.num_levels == 2
    assert isinstance(volume.level(0), zarr.Array)
    with pytest.raises(ValueError, match="level"):
        volume.level(2)
    with pytest.raises(ValueError, match="size_zyx"):
        volume.read_crop((0, 0, 0), (0, 4, 4))
