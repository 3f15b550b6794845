"""Request preprocessing: parity with ingest on the same file, the shared validator's 4xx, the crop policy."""

from pathlib import Path

import numpy as np
import pytest

from med3dinsight.config.serve import CropConfig
from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io.sources import Source
from med3dinsight.io.store import Store
from med3dinsight.models.export import load_encoder
from med3dinsight.serving.errors import ServeError
from med3dinsight.serving.preprocessing import RequestPreprocessor, safe_name

from . import serve_helpers as helpers


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return helpers.make_export(tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="module")
def pre(export) -> RequestPreprocessor:
    return RequestPreprocessor(load_encoder(export).record, CropConfig(), memory_budget_mb=256)


def ingest_file(path: Path, store: Store, kind: str = "file", files: list[str] | None = None) -> str:
    row = ingest_volume(Source(uri=str(path), kind=kind, files=files or [str(path)]), helpers.ingest_config(), store)
    assert row["status"] == "ok", row
    return row["volume_id"]


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.mha", "ct.nrrd", "ct.nii"])
def test_upload_matches_ingested_volume(pre, tmp_path, name):
    path = helpers.write_ct(tmp_path / name, seed=2, direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))  # RAS: reoriented
    store = Store(str(tmp_path / "store"))
    uploaded = pre.from_upload(path.read_bytes(), name)
    stored = pre.from_store(store, ingest_file(path, store))
    np.testing.assert_array_equal(uploaded.windows_W1DHW, stored.windows_W1DHW)
    assert uploaded.starts_zyx == stored.starts_zyx and uploaded.geometry == stored.geometry
    assert uploaded.applied["preprocess_hash"] == stored.applied["preprocess_hash"]
    assert uploaded.applied["spacing"] == [1.5, 1.5, 2.0] and uploaded.windows_W1DHW.dtype == np.float32
    assert 0.0 <= uploaded.windows_W1DHW.min() and uploaded.windows_W1DHW.max() <= 1.0


def test_dicom_zip_matches_ingested_series(pre, tmp_path):
    data = helpers.dicom_zip(helpers.ct_image(4), tmp_path / "series")
    store = Store(str(tmp_path / "store"))
    files = sorted(str(p) for p in (tmp_path / "series").iterdir())
    stored = pre.from_store(store, ingest_file(tmp_path / "series", store, "dicom", files))
    uploaded = pre.from_upload(data, "series.zip")
    np.testing.assert_array_equal(uploaded.windows_W1DHW, stored.windows_W1DHW)
    assert uploaded.applied["modality"] == "CT"


def bad_inputs(tmp: Path) -> list[tuple[str, bytes, int, str]]:
    good = helpers.write_ct(tmp / "good.nii")
    return [
        ("notes.xyz", b"hello", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("t.nii", helpers.truncated(tmp / "t.nii", good).read_bytes(), 422, "TRUNCATED"),
        ("nan.nii", helpers.nifti_with_nan(tmp / "nan.nii").read_bytes(), 422, "NON_FINITE"),
        ("4d.nii.gz", helpers.nifti_4d(tmp / "4d.nii.gz").read_bytes(), 422, "NOT_3D"),
        ("shear.nii", helpers.sheared_nifti(tmp / "shear.nii").read_bytes(), 422, "NON_ORTHONORMAL_DIRECTION"),
        ("garbage.nii.gz", b"\x1f\x8b not gzip", 422, "UNREADABLE"),
        ("garbage.mha", b"not a header at all", 415, "UNKNOWN_FORMAT"),
        ("bad.zip", b"PK not a zip", 422, "UNREADABLE"),
    ]


def test_invalid_uploads_get_ingest_reason_codes(pre, tmp_path):
    for name, data, status, reason in bad_inputs(tmp_path):
        with pytest.raises(ServeError) as error:
            pre.from_upload(data, name)
        assert (error.value.status, error.value.reason) == (status, reason), (name, error.value.message)
        assert str(tmp_path) not in error.value.message, "messages name the upload, not server paths"


def test_over_memory_budget_is_refused_from_the_header(export, tmp_path):
    small = RequestPreprocessor(load_encoder(export).record, CropConfig(), memory_budget_mb=0.01)
    with pytest.raises(ServeError) as error:
        small.from_upload(helpers.write_ct(tmp_path / "ct.nii").read_bytes(), "ct.nii")
    assert (error.value.status, error.value.reason) == (422, "OVER_MEMORY_BUDGET")


def test_store_lookups(pre, export, tmp_path):
    store = Store(str(tmp_path / "store"))
    for volume_id in ("0123456789abcdef", "../../etc/passwd", "ABC"):
        with pytest.raises(ServeError) as error:
            pre.from_store(store, volume_id)
        assert error.value.status == 404
    other = helpers.ingest_config(target_spacing=[2.0, 2.0, 2.0])
    path = helpers.write_ct(tmp_path / "ct.nii.gz")
    row = ingest_volume(Source(uri=str(path), kind="file", files=[str(path)]), other, store)
    with pytest.raises(ServeError) as error:
        pre.from_store(store, row["volume_id"])
    assert (error.value.status, error.value.reason) == (422, "PREPROCESSING_MISMATCH")


def test_export_without_ingest_record_is_refused(tmp_path):
    record = load_encoder(helpers.make_export(tmp_path / "m")).record
    with pytest.raises(ValueError, match="no ingest preprocessing record"):
        RequestPreprocessor(record | {"preprocessing": {}}, CropConfig(), 256)
    bumped = {**record["preprocessing"], "ingest": {**record["preprocessing"]["ingest"], "pipeline_version": 99}}
    with pytest.raises(ValueError, match="pipeline_version 99"):
        RequestPreprocessor(record | {"preprocessing": bumped}, CropConfig(), 256)


def test_large_volume_follows_the_window_cap(export, tmp_path):
    cap = RequestPreprocessor(load_encoder(export).record, CropConfig(max_windows=4), memory_budget_mb=256)
    path = helpers.write_ct(tmp_path / "big.nii.gz", shape_zyx=(60, 120, 110))
    prepared = cap.from_upload(path.read_bytes(), "big.nii.gz")
    assert 1 < len(prepared.starts_zyx) <= 4 and prepared.windows_W1DHW.shape[1:] == (1, 32, 32, 32)
    center = RequestPreprocessor(load_encoder(export).record, CropConfig(mode="center"), 256)
    assert len(center.from_upload(path.read_bytes(), "big.nii.gz").starts_zyx) == 1


@pytest.mark.parametrize(
    ("given", "expected"),
    [("scan.nii.gz", "scan.nii.gz"), ("../../etc/passwd", "passwd"), ("C:\\x\\a b.mha", "a_b.mha"), ("", "upload")],
)
def test_safe_name(given, expected):
    assert safe_name(given) == expected
