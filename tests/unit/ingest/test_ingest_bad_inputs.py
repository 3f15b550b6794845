"""Every kind of bad file input becomes a `rejected` row with its stable reason code and the file's name."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from med3dinsight.ingest.reasons import Reason, VolumeRejected, check_header_shape, validate_image
from med3dinsight.ingest.volume import ROW_KEYS, ingest_volume

from .ingest_helpers import file_source, make_cfg, nibabel_test_file, write_image

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _volume(dtype: type = np.float32) -> np.ndarray:
    return np.random.default_rng(0).normal(100.0, 30.0, (12, 10, 8)).astype(dtype)


def _good_nifti(folder: Path, name: str = "good.nii.gz") -> Path:
    path = folder / name
    nib.save(nib.Nifti1Image(_volume(np.int16), AFFINE), path)
    return path


def truncated_nii_gz(folder: Path) -> Path:
    path = _good_nifti(folder)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def truncated_gzip_member(folder: Path) -> Path:
    """A complete-looking gzip stream whose payload misses voxels (gzip itself is valid)."""
    raw = gzip.decompress(_good_nifti(folder).read_bytes())
    path = folder / "short.nii.gz"
    path.write_bytes(gzip.compress(raw[:-100]))
    return path


def truncated_nii(folder: Path) -> Path:
    path = _good_nifti(folder, "plain.nii")
    path.write_bytes(path.read_bytes()[:-100])
    return path


def _truncated_sitk(folder: Path, name: str, compress: bool) -> Path:
    path = folder / name
    sitk.WriteImage(sitk.GetImageFromArray(_volume(np.int16)), str(path), useCompression=compress)
    path.write_bytes(path.read_bytes()[:-60])
    return path


def _nifti_with(folder: Path, voxels: np.ndarray, affine: np.ndarray = AFFINE, name: str = "x.nii.gz") -> Path:
    path = folder / name
    nib.save(nib.Nifti1Image(voxels, affine), path)
    return path


def nan_nifti(folder: Path) -> Path:
    voxels = _volume()
    voxels[3, 4, 5] = np.nan
    return _nifti_with(folder, voxels)


def inf_nifti(folder: Path) -> Path:
    voxels = _volume(np.float64)
    voxels[0, 0, 0] = -np.inf
    return _nifti_with(folder, voxels, name="inf.nii")


def nan_mha(folder: Path) -> Path:
    voxels = _volume()
    voxels[1, 1, 1] = np.nan
    return write_image(sitk.GetImageFromArray(voxels), folder / "nan.mha")


def sheared_nifti(folder: Path) -> Path:
    affine = AFFINE.copy()
    affine[0, 1] = 0.4
    image = nib.Nifti1Image(_volume(), affine)
    image.set_qform(None, code=0)
    image.set_sform(affine, code=2)
    path = folder / "sheared.nii.gz"
    nib.save(image, path)
    return path


def sheared_mha(folder: Path) -> Path:
    image = sitk.GetImageFromArray(_volume())
    image.SetDirection((1.0, 0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return write_image(image, folder / "sheared.mha")


def four_d_nifti(folder: Path) -> Path:
    return _nifti_with(folder, np.stack([_volume(), _volume()], axis=-1), name="four_d.nii.gz")


def two_d_nifti(folder: Path) -> Path:
    return _nifti_with(folder, _volume()[:, :, 0], name="two_d.nii.gz")


def vector_mha(folder: Path) -> Path:
    image = sitk.GetImageFromArray(np.stack([_volume()] * 3, axis=-1), isVector=True)
    return write_image(image, folder / "vector.mha")


def complex_mha(folder: Path) -> Path:
    return write_image(sitk.GetImageFromArray(_volume() + 1j * _volume()), folder / "complex.mha")


def rgb_png(folder: Path) -> Path:
    return write_image(sitk.GetImageFromArray(np.zeros((8, 8, 3), np.uint8), isVector=True), folder / "rgb.png")


def constant_nifti(folder: Path) -> Path:
    return _nifti_with(folder, np.full((12, 10, 8), 40, np.int16))


def constant_after_ct_window(folder: Path) -> Path:
    """Metal-only values: all above the HU window, so the stored volume would be constant."""
    return _nifti_with(folder, _volume(np.int16) + np.int16(4000))


def not_an_image(folder: Path) -> Path:
    path = folder / "notes.txt"
    path.write_text("not an image")
    return path


def garbage_nifti(folder: Path) -> Path:
    path = folder / "garbage.nii.gz"
    path.write_bytes(gzip.compress(b"\x00" * 2000))
    return path


def missing_file(folder: Path) -> Path:
    return folder / "does_not_exist.nii.gz"


def ambiguous_gz(folder: Path) -> Path:
    _good_nifti(folder, "x.nii")
    return _good_nifti(folder, "x.nii.gz")


def ambiguous_plain(folder: Path) -> Path:
    _good_nifti(folder, "y.nii.gz")
    return _good_nifti(folder, "y.nii")


def nibabel_4d(folder: Path) -> Path:
    return nibabel_test_file("example4d.nii.gz")


def nibabel_nifti2_4d(folder: Path) -> Path:
    return nibabel_test_file("example_nifti2.nii.gz")


CASES: list[tuple[Callable[[Path], Path], Reason]] = [
    (truncated_nii_gz, Reason.TRUNCATED),
    (truncated_gzip_member, Reason.TRUNCATED),
    (truncated_nii, Reason.TRUNCATED),
    (lambda f: _truncated_sitk(f, "t.mha", False), Reason.TRUNCATED),
    (lambda f: _truncated_sitk(f, "tz.mha", True), Reason.TRUNCATED),
    (lambda f: _truncated_sitk(f, "t.nrrd", False), Reason.TRUNCATED),
    (lambda f: _truncated_sitk(f, "tz.nrrd", True), Reason.TRUNCATED),
    (nan_nifti, Reason.NON_FINITE),
    (inf_nifti, Reason.NON_FINITE),
    (nan_mha, Reason.NON_FINITE),
    (sheared_nifti, Reason.NON_ORTHONORMAL_DIRECTION),
    (sheared_mha, Reason.NON_ORTHONORMAL_DIRECTION),
    (four_d_nifti, Reason.NOT_3D),
    (two_d_nifti, Reason.NOT_3D),
    (vector_mha, Reason.NOT_3D),
    (complex_mha, Reason.NOT_3D),
    (rgb_png, Reason.NOT_3D),
    (nibabel_4d, Reason.NOT_3D),
    (nibabel_nifti2_4d, Reason.NOT_3D),
    (constant_nifti, Reason.CONSTANT_VOLUME),
    (constant_after_ct_window, Reason.CONSTANT_VOLUME),
    (not_an_image, Reason.UNKNOWN_FORMAT),
    (garbage_nifti, Reason.UNREADABLE),
    (missing_file, Reason.UNREADABLE),
    (ambiguous_gz, Reason.AMBIGUOUS_SOURCE),
    (ambiguous_plain, Reason.AMBIGUOUS_SOURCE),
]


@pytest.mark.parametrize(("build", "reason"), CASES, ids=[f"{r}-{i}" for i, (_, r) in enumerate(CASES)])
def test_bad_input_is_rejected_with_its_reason(tmp_path, store, build, reason):
    path = build(tmp_path)
    cfg = make_cfg("preprocess.modality=CT") if build is constant_after_ct_window else make_cfg()
    row = ingest_volume(file_source(path), cfg, store)
    assert (row["status"], row["reason"]) == ("rejected", reason), row["message"]
    assert str(path) in row["message"]
    assert set(row) == set(ROW_KEYS) and row["path"] is None and row["skipped"] is False
    assert not (tmp_path / "store" / "volumes").exists() or not any((tmp_path / "store" / "volumes").iterdir())


@pytest.mark.parametrize(
    ("overrides", "needed"),
    [
        (["memory_budget_mb=0.001"], "native"),  # 960 voxels = 0.0037 MB
        (["memory_budget_mb=1", "preprocess.target_spacing=[0.05,0.05,0.05]"], "resampled"),  # 61 MB
    ],
)
def test_over_memory_budget_is_refused_before_reading_pixels(tmp_path, store, monkeypatch, overrides, needed):
    path = _good_nifti(tmp_path)
    monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: pytest.fail("pixels were read"))
    row = ingest_volume(file_source(path), make_cfg(*overrides), store)
    assert row["reason"] == Reason.OVER_MEMORY_BUDGET, (needed, row["message"])


def test_label_map_with_fractions_is_rejected(tmp_path, store):
    row = ingest_volume(file_source(_nifti_with(tmp_path, _volume() / 7.0)), make_cfg(), store, is_label=True)
    assert row["reason"] == Reason.LABEL_NOT_INTEGER


def test_empty_label_map_is_accepted(tmp_path, store):
    row = ingest_volume(file_source(_nifti_with(tmp_path, np.zeros((8, 8, 8), np.uint8))), make_cfg(), store, True)
    assert row["status"] == "ok", row["message"]


def test_header_and_image_validators_directly():
    with pytest.raises(VolumeRejected) as caught:
        check_header_shape(3, (0, 4, 4), 1, "empty.nii")
    assert caught.value.reason == Reason.EMPTY_VOLUME
    check_header_shape(4, (4, 4, 4, 1), 1, "one_frame.nii")  # a 4D header with one frame is a 3D volume
    with pytest.raises(VolumeRejected) as caught:
        validate_image(sitk.Image(4, 4, 4, sitk.sitkFloat32), "zeros.mha")
    assert caught.value.reason == Reason.CONSTANT_VOLUME and "zeros.mha" in caught.value.message


def test_reason_codes_are_stable_strings():
    assert Reason.TRUNCATED == "TRUNCATED" and str(Reason.DICOM_GANTRY_TILT) == "DICOM_GANTRY_TILT"
    assert all(code.value == code.name for code in Reason)


def test_malformed_header_value_is_unreadable_not_a_crash(tmp_path, store):
    path = tmp_path / "odd.mha"
    write_image(sitk.GetImageFromArray(_volume()), path)
    path.write_bytes(path.read_bytes().replace(b"DimSize = 8 10 12", b"DimSize = 8 ten 12"))
    row = ingest_volume(file_source(path), make_cfg(), store)
    assert row["status"] == "rejected" and row["reason"] in (Reason.UNREADABLE, Reason.UNKNOWN_FORMAT)
    assert str(path) in row["message"]
