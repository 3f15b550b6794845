"""Tri-planar slicing follows physical orientation, whatever the stored axis order and flips."""

import numpy as np
import pytest
import SimpleITK as sitk

from med3dinsight.captioning.slicing import (
    extract_slice,
    plane_axis,
    random_indices,
    relative_position,
    sample_slices,
    uniform_indices,
)

SHAPE_ZYX = (10, 14, 18)
SPACING_XYZ = (1.0, 1.5, 2.0)
# Marker voxel in the canonical (LPS, identity direction) array: towards patient Left (+x), Posterior (+y),
# Superior (+z), but not at the edges, so a wrong flip or transpose moves it.
MARKER_ZYX = (7, 10, 13)


def canonical() -> sitk.Image:
    volume = np.zeros(SHAPE_ZYX, np.int16)
    volume[MARKER_ZYX] = 1000
    volume[1, 2, 3] = 500  # a second, dimmer landmark near the R / A / I corner
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin((-5.0, 3.0, 11.0))
    return image


def as_stored(image: sitk.Image) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    return sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetDirection()


def marker_index(image: sitk.Image, plane: str) -> int:
    point = canonical().TransformIndexToPhysicalPoint(MARKER_ZYX[::-1])
    index_xyz = image.TransformPhysicalPointToIndex(point)
    axis, _ = plane_axis(image.GetDirection(), plane)
    return int(index_xyz[::-1][axis])


def test_canonical_display_places_the_marker_by_anatomy() -> None:
    volume, spacing, direction = as_stored(canonical())
    axial, axial_mm = extract_slice(volume, spacing, direction, "axial", MARKER_ZYX[0])
    # rows anterior -> posterior (+y), columns patient right -> left (+x)
    assert np.argwhere(axial == 1000).tolist() == [[10, 13]]
    assert axial.shape == (14, 18) and axial_mm == (1.5, 1.0)
    coronal, coronal_mm = extract_slice(volume, spacing, direction, "coronal", MARKER_ZYX[1])
    # rows superior -> inferior (-z): z=7 of 10 is row 2
    assert np.argwhere(coronal == 1000).tolist() == [[2, 13]]
    assert coronal.shape == (10, 18) and coronal_mm == (2.0, 1.0)
    sagittal, sagittal_mm = extract_slice(volume, spacing, direction, "sagittal", MARKER_ZYX[2])
    assert np.argwhere(sagittal == 1000).tolist() == [[2, 10]]
    assert sagittal.shape == (10, 14) and sagittal_mm == (2.0, 1.5)


@pytest.mark.parametrize("code", ["LPS", "RAS", "RAI", "SPL", "AIR", "IRP", "PSL"])
@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_any_stored_orientation_gives_the_same_slices(code: str, plane: str) -> None:
    reference = as_stored(canonical())
    stored_image = sitk.DICOMOrient(canonical(), code)
    stored = as_stored(stored_image)
    if code != "LPS":
        assert stored[0].shape != SHAPE_ZYX or stored[2] != reference[2], "the orientation must change storage"
    expected, expected_mm = extract_slice(*reference, plane, marker_index(canonical(), plane))
    index = marker_index(stored_image, plane)
    got, got_mm = extract_slice(*stored, plane, index)
    np.testing.assert_array_equal(got, expected)
    assert got_mm == expected_mm
    size = stored[0].shape[plane_axis(stored[2], plane)[0]]
    reference_size = SHAPE_ZYX[plane_axis(reference[2], plane)[0]]
    ref_position = relative_position(marker_index(canonical(), plane), reference_size, 1)
    assert relative_position(index, size, plane_axis(stored[2], plane)[1]) == pytest.approx(ref_position)


def test_oblique_45_degrees_is_refused() -> None:
    c = np.sqrt(0.5)
    with pytest.raises(ValueError, match="direction"):
        plane_axis([c, -c, 0, c, c, 0, 0, 0, 1], "axial")


def test_relative_position_ends() -> None:
    assert relative_position(0, 5, 1) == 0.0 and relative_position(4, 5, 1) == 1.0
    assert relative_position(0, 5, -1) == 1.0 and relative_position(0, 1, 1) == 0.5


@pytest.mark.parametrize(
    ("n", "count", "expected"),
    [(10, 2, [2, 7]), (10, 5, [1, 3, 5, 7, 9]), (3, 8, [0, 1, 2]), (1, 1, [0]), (9, 1, [4])],
)
def test_uniform_indices(n: int, count: int, expected: list[int]) -> None:
    assert uniform_indices(list(range(n)), count) == expected


def test_random_is_seeded_per_volume_and_plane() -> None:
    a = random_indices(list(range(100)), 5, seed=3, volume_id="v1", plane="axial")
    assert a == random_indices(list(range(100)), 5, seed=3, volume_id="v1", plane="axial")
    assert a != random_indices(list(range(100)), 5, seed=3, volume_id="v2", plane="axial")
    assert a != random_indices(list(range(100)), 5, seed=4, volume_id="v1", plane="axial")
    assert len(set(a)) == 5 and a == sorted(a)


def test_foreground_skips_empty_slices() -> None:
    volume = np.full((20, 8, 8), -1000, np.int16)
    volume[5:9, 2:6, 2:6] = 40  # tissue only in axial slices 5..8
    refs = sample_slices(volume, np.eye(3).ravel(), "v", ["axial"], 3, "foreground",
                         foreground_threshold=-500, foreground_fraction=0.2)
    assert [r.slice_index for r in refs] == [5, 7, 8]
    assert all(5 <= r.slice_index <= 8 for r in refs)
    none = sample_slices(volume, np.eye(3).ravel(), "v", ["axial"], 3, "foreground",
                         foreground_threshold=-500, foreground_fraction=0.9)
    assert none == []


def test_sample_slices_records_everything() -> None:
    volume, _, direction = as_stored(sitk.DICOMOrient(canonical(), "RAI"))
    refs = sample_slices(volume, direction, "vol", ["sagittal", "axial"], 2)
    assert [(r.plane, r.volume_id) for r in refs] == [("sagittal", "vol")] * 2 + [("axial", "vol")] * 2
    for r in refs:
        assert 0.0 <= r.position <= 1.0 and r.array_axis == plane_axis(direction, r.plane)[0]
    with pytest.raises(ValueError, match="plane"):
        sample_slices(volume, direction, "vol", ["oblique"], 2)
