"""DICOM series: a good series matches SimpleITK; broken series get their DICOM_* reason (pydicom edits)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.data import get_testdata_file

from med3dinsight.ingest.reasons import Reason
from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io.sources import Source
from med3dinsight.io.volume_reader import open_volume

from .ingest_helpers import dicom_source, make_cfg


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _edit(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _shift(ds: pydicom.Dataset, dx: float = 0.0, dy: float = 0.0, dz: float = 0.0) -> None:
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [f"{x + dx:.6f}", f"{y + dy:.6f}", f"{z + dz:.6f}"]


def missing_slice(folder: Path) -> None:
    os.remove(_files(folder)[5])


def duplicate_position(folder: Path) -> None:
    files = _files(folder)
    position = pydicom.dcmread(files[4]).ImagePositionPatient
    _edit(files[5], lambda ds: setattr(ds, "ImagePositionPatient", position))


def nonuniform_spacing(folder: Path) -> None:
    for path in _files(folder)[6:]:
        _edit(path, lambda ds: _shift(ds, dz=1.0))  # one step of 3.5 mm among 2.5 mm steps


def gantry_tilt(folder: Path) -> None:
    for k, path in enumerate(_files(folder)):
        _edit(path, lambda ds, k=k: (_shift(ds, dy=k * 2.5 * np.tan(np.radians(10.0))),
                                     setattr(ds, "GantryDetectorTilt", "10")))  # fmt: skip


def mixed_sizes(folder: Path) -> None:
    def crop(ds: pydicom.Dataset) -> None:
        pixels = ds.pixel_array[:-4, :]
        ds.Rows = pixels.shape[0]
        ds.PixelData = pixels.tobytes()

    _edit(_files(folder)[3], crop)


def missing_position(folder: Path) -> None:
    _edit(_files(folder)[2], lambda ds: delattr(ds, "ImagePositionPatient"))


def not_dicom(folder: Path) -> None:
    (folder / "zz_junk.dcm").write_text("not a DICOM file")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (missing_slice, Reason.DICOM_MISSING_SLICES),
        (duplicate_position, Reason.DICOM_DUPLICATE_POSITIONS),
        (nonuniform_spacing, Reason.DICOM_NONUNIFORM_SPACING),
        (gantry_tilt, Reason.DICOM_GANTRY_TILT),
        (mixed_sizes, Reason.DICOM_MIXED_SLICE_SIZES),
        (missing_position, Reason.DICOM_MISSING_GEOMETRY),
        (not_dicom, Reason.DICOM_MISSING_GEOMETRY),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
def test_broken_series_is_rejected(dicom_series, store, damage, reason):
    damage(dicom_series)
    row = ingest_volume(dicom_source(dicom_series), make_cfg(), store)
    assert (row["status"], row["reason"]) == ("rejected", reason), row["message"]
    assert str(dicom_series) in row["message"]
    assert row["sha256"] is not None and row["path"] is None


def test_good_series_matches_simpleitk_in_any_file_order(dicom_series, store):
    files = [str(f) for f in _files(dicom_series)]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reference = reader.Execute()
    random.Random(0).shuffle(files)
    cfg = make_cfg("preprocess.intensity.ct_window=[-4000,4000]")
    row = ingest_volume(Source(uri=str(dicom_series), kind="dicom", files=files), cfg, store)
    assert row["status"] == "ok", row["message"]
    assert row["modality"] == "CT"
    np.testing.assert_allclose(row["spacing"], reference.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(row["origin"], reference.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(row["direction"], reference.GetDirection(), atol=1e-6)
    voxels = open_volume(store, row["volume_id"]).level(0)[...]
    np.testing.assert_array_equal(voxels, sitk.GetArrayFromImage(reference))


def test_series_hash_ignores_file_order(dicom_series, store):
    files = [str(f) for f in _files(dicom_series)]
    first = ingest_volume(Source(uri="a", kind="dicom", files=files), make_cfg(), store)
    second = ingest_volume(Source(uri="b", kind="dicom", files=files[::-1]), make_cfg(), store)
    assert first["sha256"] == second["sha256"] and first["volume_id"] == second["volume_id"]
    assert second["skipped"] is True


def test_modality_tag_wins_over_the_intensity_heuristic(dicom_series, store):
    for path in _files(dicom_series):
        _edit(path, lambda ds: setattr(ds, "Modality", "MR"))
    row = ingest_volume(dicom_source(dicom_series), make_cfg(), store)
    assert row["modality"] == "MR" and row["dtype"] == "float32"


def test_pydicom_radial_scout_series_has_mixed_orientations(store):
    first = Path(get_testdata_file("MR_small.dcm")).parent / "dicomdirtests" / "98892003" / "MR700"
    files = sorted(str(p) for p in first.iterdir())
    assert len(files) == 7
    row = ingest_volume(Source(uri=str(first), kind="dicom", files=files), make_cfg(), store)
    assert row["reason"] == Reason.DICOM_MIXED_ORIENTATION, row["message"]


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_pydicom_single_slice_is_not_3d(store, name):
    path = get_testdata_file(name)
    row = ingest_volume(Source(uri=path, kind="dicom", files=[path]), make_cfg(), store)
    assert row["reason"] == Reason.NOT_3D, row["message"]
