"""Input discovery: files, folders, globs, list files; DICOM grouped by series and sorted along the normal."""

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from med3dinsight.io.discover import discover_sources


def write_dicom_header(path: Path, series_uid: str, z: float, instance: int) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SeriesInstanceUID = series_uid
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0, 0, z]
    ds.InstanceNumber = instance
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "a.nii.gz").write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.mha").write_bytes(b"x")
    (tmp_path / "sub" / "c.nrrd").write_bytes(b"x")
    (tmp_path / "sub" / "notes.json").write_text("{}")  # sidecar: ignored
    (tmp_path / "sub" / "weird.xyz").write_bytes(b"x")  # unknown: kept so ingest rejects it by name
    (tmp_path / ".hidden.nii").write_bytes(b"x")
    dcm = tmp_path / "dicom"
    dcm.mkdir()
    for i, z in enumerate([5.0, 1.0, 3.0]):  # written out of order on purpose
        write_dicom_header(dcm / f"s1_{i}.dcm", "1.2.3.1", z, i)
    for i, z in enumerate([0.0, 2.0]):
        write_dicom_header(dcm / f"IM{i}", "1.2.3.2", z, i)  # extensionless, found by the DICM magic
    return tmp_path


def test_folder(tree: Path) -> None:
    sources = discover_sources(str(tree))
    kinds = {Path(s.uri.split("#")[0]).name + ("#" + s.series_uid if s.series_uid else ""): s.kind for s in sources}
    assert kinds == {
        "a.nii.gz": "file", "b.mha": "file", "c.nrrd": "file", "weird.xyz": "file",
        "dicom#1.2.3.1": "dicom", "dicom#1.2.3.2": "dicom",
    }
    series = next(s for s in sources if s.series_uid == "1.2.3.1")
    zs = [float(pydicom.dcmread(f).ImagePositionPatient[2]) for f in series.files]
    assert zs == [1.0, 3.0, 5.0]


def test_glob_and_list_file(tree: Path) -> None:
    assert [Path(s.uri).name for s in discover_sources(str(tree / "sub" / "*.m*"))] == ["b.mha"]
    listing = tree / "inputs.txt"
    listing.write_text(f"# two inputs\n{tree / 'a.nii.gz'}\n\n{tree / 'sub'}/c.nrrd\n{tree / 'a.nii.gz'}\n")
    assert [Path(s.uri).name for s in discover_sources(str(listing))] == ["a.nii.gz", "c.nrrd"]


@pytest.mark.parametrize("spec", ["/nonexistent/path", "/nonexistent/*.nii.gz"])
def test_nothing_found_names_the_input(spec: str) -> None:
    with pytest.raises(ValueError, match="nonexistent"):
        discover_sources(spec)


def test_fsspec_url() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/bucket/x.nii.gz", b"x")
    fs.pipe("/bucket/y/z.mha", b"x")
    uris = [s.uri for s in discover_sources("memory://bucket")]
    assert uris == ["memory:///bucket/x.nii.gz", "memory:///bucket/y/z.mha"]
