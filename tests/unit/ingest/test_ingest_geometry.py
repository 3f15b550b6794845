"""ingest_volume on good inputs: geometry and voxels against SimpleITK, orientation, resampling, OME-Zarr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import zarr
from ome_zarr_models.v05 import Image

from med3dinsight.config.ingest import CODECS
from med3dinsight.ingest.volume import ROW_KEYS, ingest_volume
from med3dinsight.io.ome_zarr_writer import pyramid_level_count, quiet_numcodecs_warning
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume

from .ingest_helpers import file_source, make_cfg, nibabel_test_file, rotation_z, write_image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_geometry_and_voxels_exact_without_resampling(tmp_path, store, wide_window_cfg, ct_image, suffix):
    path = write_image(ct_image, tmp_path / f"ct{suffix}")
    reference = sitk.ReadImage(str(path))  # NIfTI stores float32 geometry: compare with what ITK reads
    row = ingest_volume(file_source(path), wide_window_cfg, store)
    assert row["status"] == "ok", row
    assert set(row) == set(ROW_KEYS)
    assert row["spacing"] == list(reference.GetSpacing())
    assert row["origin"] == list(reference.GetOrigin())
    assert row["direction"] == list(reference.GetDirection())
    assert row["shape"] == list(sitk.GetArrayViewFromImage(reference).shape)
    assert row["modality"] == "CT" and row["dtype"] == "int16"
    volume = open_volume(store, row["volume_id"])
    np.testing.assert_array_equal(volume.level(0)[...], sitk.GetArrayFromImage(ct_image))
    stored = volume.to_sitk()
    assert stored.GetSpacing() == reference.GetSpacing() and stored.GetOrigin() == reference.GetOrigin()


def test_oblique_direction_is_kept_exactly(tmp_path, store, wide_window_cfg, ct_image):
    oblique = sitk.Image(ct_image)
    oblique.SetDirection(rotation_z(20.0))
    row = ingest_volume(file_source(write_image(oblique, tmp_path / "oblique.mha")), wide_window_cfg, store)
    assert row["status"] == "ok", row
    np.testing.assert_allclose(row["direction"], rotation_z(20.0), atol=1e-12)
    volume = open_volume(store, row["volume_id"])
    np.testing.assert_allclose(volume.to_sitk().GetDirection(), rotation_z(20.0), atol=1e-12)


RAS = (-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0)
SAGITTAL = (0, 0, -1.0, 1.0, 0, 0, 0, -1.0, 0)  # image axes run along y, -z, -x: permuted and flipped


@pytest.mark.parametrize("direction", [RAS, SAGITTAL], ids=["RAS", "sagittal"])
def test_reorientation_keeps_a_marker_at_its_physical_point(tmp_path, store, cfg, ct_image, direction):
    image = sitk.Image(ct_image)
    image.SetDirection(direction)
    marker_index = (5, 7, 11)  # (x, y, z)
    image[marker_index] = 2000
    marker_point = image.TransformIndexToPhysicalPoint(marker_index)
    row = ingest_volume(file_source(write_image(image, tmp_path / "in.nii.gz")), cfg, store)
    assert row["status"] == "ok", row
    np.testing.assert_allclose(row["direction"], np.eye(3).ravel(), atol=1e-6)  # LPS
    volume = open_volume(store, row["volume_id"])
    index_zyx = volume.physical_to_index(marker_point)
    np.testing.assert_allclose(index_zyx, np.rint(index_zyx), atol=1e-3)
    assert volume.level(0)[tuple(int(i) for i in np.rint(index_zyx))] == 2000
    assert int(np.count_nonzero(volume.level(0)[...] == 2000)) == 1
    stored = volume.to_sitk()
    assert stored[stored.TransformPhysicalPointToIndex(marker_point)] == 2000


def test_resampling_keeps_the_physical_extent_and_centre(tmp_path, store, ct_image):
    cfg = make_cfg("preprocess.target_spacing=[1.5,1.25,2.0]")
    row = ingest_volume(file_source(write_image(ct_image, tmp_path / "ct.mha")), cfg, store)
    assert row["status"] == "ok", row
    assert row["spacing"] == [1.5, 1.25, 2.0]
    stored = open_volume(store, row["volume_id"]).to_sitk()
    old_extent = np.multiply(ct_image.GetSize(), ct_image.GetSpacing())
    new_extent = np.multiply(stored.GetSize(), stored.GetSpacing())
    assert np.all(np.abs(new_extent - old_extent) <= np.asarray(stored.GetSpacing()) / 2 + 1e-9)

    def centre(image: sitk.Image) -> np.ndarray:
        return np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()]))

    np.testing.assert_allclose(centre(stored), centre(ct_image), atol=1e-6)
    assert row["native_spacing"] == pytest.approx(list(ct_image.GetSpacing()))


def test_labels_resample_nearest_and_stay_integer(tmp_path, store, ct_labels):
    cfg = make_cfg("preprocess.target_spacing=[1.6,1.8,1.0]")
    row = ingest_volume(file_source(write_image(ct_labels, tmp_path / "l.nii.gz")), cfg, store, is_label=True)
    assert row["status"] == "ok", row
    assert row["modality"] is None and row["dtype"] == "uint8" and row["is_label"] is True
    volume = open_volume(store, row["volume_id"])
    for level in range(volume.num_levels):
        assert set(np.unique(volume.level(level)[...])) <= {0, 1, 2, 3}
    assert set(np.unique(volume.level(0)[...])) == {0, 1, 2, 3}


def test_mr_policy_scales_to_unit_range(tmp_path, store, cfg, mr_image):
    row = ingest_volume(file_source(write_image(mr_image, tmp_path / "mr.mha")), cfg, store)
    assert row["status"] == "ok", row
    assert row["modality"] == "MR" and row["dtype"] == "float32"
    assert row["min"] == 0.0 and row["max"] == 1.0
    assert 0.0 <= row["p00_5"] <= row["mean"] <= row["p99_5"] <= 1.0
    assert all(isinstance(row[k], float) for k in ("min", "max", "mean", "std", "p00_5", "p99_5"))


def test_ct_window_clips_and_stats_match_the_stored_voxels(tmp_path, store, ct_image):
    cfg = make_cfg("preprocess.intensity.ct_window=[-200,300]")
    row = ingest_volume(file_source(write_image(ct_image, tmp_path / "ct.mha")), cfg, store)
    voxels = open_volume(store, row["volume_id"]).level(0)[...]
    np.testing.assert_array_equal(voxels, np.clip(sitk.GetArrayFromImage(ct_image), -200, 300))
    assert (row["min"], row["max"]) == (-200.0, 300.0)
    assert row["mean"] == pytest.approx(float(voxels.mean()))
    assert row["p99_5"] == pytest.approx(float(np.percentile(voxels, 99.5)))


@pytest.mark.parametrize("codec", CODECS)
def test_ome_zarr_validates_and_has_the_geometry(tmp_path, store, ct_nifti, codec):
    cfg = make_cfg(f"zarr.codec={codec}", "zarr.levels=3")
    row = ingest_volume(file_source(ct_nifti), cfg, store)
    group = zarr.open_group(row["path"], mode="r")
    with quiet_numcodecs_warning():
        model = Image.from_zarr(group)  # raises on any OME-Zarr 0.5 schema violation
    multiscale = model.attributes.ome.multiscales[0]
    assert [a.name for a in multiscale.axes] == ["z", "y", "x"]
    assert {a.unit for a in multiscale.axes} == {"millimeter"}
    spacing_zyx, origin_zyx = row["spacing"][::-1], row["origin"][::-1]
    for level, dataset in enumerate(multiscale.datasets):
        scale, translation = dataset.coordinateTransformations
        assert scale.scale == pytest.approx([s * 2**level for s in spacing_zyx])
        expected = [o + s * (2**level - 1) / 2 for o, s in zip(origin_zyx, spacing_zyx, strict=True)]
        assert translation.translation == pytest.approx(expected)
    assert len(multiscale.datasets) == 2  # z = 20 voxels: a third level would have an axis below 8
    attrs = group.attrs["med3dinsight"]
    assert attrs["geometry"]["direction"] == row["direction"] and attrs["sha256"] == row["sha256"]
    assert attrs["complete"] is True and attrs["preprocessing"]["zarr"]["codec"] == codec


@pytest.mark.parametrize(
    ("shape_zyx", "configured", "expected"),
    [((64, 64, 64), 3, 3), ((64, 64, 64), 5, 4), ((20, 28, 36), 3, 2), ((4, 4, 4), 3, 2), ((64, 64, 64), 2, 2)],
)
def test_pyramid_level_count(shape_zyx, configured, expected):
    assert pyramid_level_count(shape_zyx, configured) == expected


def test_pyramid_level_centres_match_the_voxels_they_average(tmp_path, store, wide_window_cfg, ct_image):
    oblique = sitk.Image(ct_image)
    oblique.SetDirection(rotation_z(30.0))
    row = ingest_volume(file_source(write_image(oblique, tmp_path / "o.mha")), wide_window_cfg, store)
    volume = open_volume(store, row["volume_id"])
    block = [volume.index_to_physical(i) for i in np.ndindex(2, 2, 2)]
    np.testing.assert_allclose(volume.index_to_physical((0, 0, 0), level=1), np.mean(block, axis=0), atol=1e-9)
    assert volume.level(1)[0, 0, 0] == np.rint(volume.level(0)[:2, :2, :2].mean())


def test_nibabel_big_endian_and_nifti2_files_are_accepted(tmp_path: Path, store: Store, cfg):
    nib = pytest.importorskip("nibabel")
    big_endian = nibabel_test_file("anatomical.nii")
    assert nib.load(big_endian).header.endianness == ">"
    row = ingest_volume(file_source(big_endian), cfg, store)
    assert row["status"] == "ok", row
    np.testing.assert_array_equal(
        open_volume(store, row["volume_id"]).to_sitk().GetSize(), sitk.ReadImage(str(big_endian)).GetSize()
    )
    voxels = np.arange(6 * 7 * 8, dtype=np.float32).reshape(6, 7, 8)
    nib.save(nib.Nifti2Image(voxels, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "n2.nii.gz")
    row = ingest_volume(file_source(tmp_path / "n2.nii.gz"), cfg, store)
    assert row["status"] == "ok", row
    assert row["spacing"] == [2.0, 2.0, 3.0]


def test_nilearn_mni152_template_ingests_as_mr(tmp_path, store, cfg):
    pytest.importorskip("nilearn")
    from med3dinsight.data.samples import write_mni152

    path = write_mni152(str(tmp_path / "mni152.nii.gz"))
    row = ingest_volume(file_source(path), cfg, store)
    assert row["status"] == "ok", row
    assert row["modality"] == "MR" and row["spacing"] == [2.0, 2.0, 2.0]
    assert row["shape"] == [95, 117, 99]
