"""Publication: idempotent reruns, config-dependent ids, crashes never visible, object-store write order."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest
import SimpleITK as sitk
import zarr
from ome_zarr_models.v05 import Image

from med3dinsight.ingest.reasons import Reason
from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io import ome_zarr_writer
from med3dinsight.io.ome_zarr_writer import quiet_numcodecs_warning
from med3dinsight.io.sources import Source
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import VolumeNotFoundError, open_volume

from .ingest_helpers import file_source, make_cfg


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def _crash_after_first_level(monkeypatch: pytest.MonkeyPatch) -> None:
    real_write_level = ome_zarr_writer.write_level
    calls = []

    def write_then_crash(*args, **kwargs):
        if calls:
            raise RuntimeError("simulated crash mid-write")
        calls.append(1)
        real_write_level(*args, **kwargs)

    monkeypatch.setattr(ome_zarr_writer, "write_level", write_then_crash)


def test_rerun_does_no_work_and_changes_nothing(tmp_path, store, cfg, ct_nifti, monkeypatch):
    first = ingest_volume(file_source(ct_nifti), cfg, store)
    before = _snapshot(tmp_path / "store")
    monkeypatch.setattr(ome_zarr_writer, "write_level", lambda *a, **k: pytest.fail("rewrote a level"))
    second = ingest_volume(file_source(ct_nifti), cfg, store)
    assert second["skipped"] is True and first["skipped"] is False
    assert {**second, "skipped": False} == first
    assert _snapshot(tmp_path / "store") == before


def test_same_bytes_elsewhere_reuse_the_volume_and_name_the_new_source(tmp_path, store, cfg, ct_nifti):
    first = ingest_volume(file_source(ct_nifti), cfg, store)
    copy = tmp_path / "copy" / "same.nii.gz"
    copy.parent.mkdir()
    copy.write_bytes(ct_nifti.read_bytes())
    second = ingest_volume(file_source(copy), cfg, store)
    assert second["volume_id"] == first["volume_id"] and second["skipped"] is True
    assert second["source"] == str(copy)


def test_changed_preprocessing_gives_a_new_volume(store, cfg, ct_nifti):
    first = ingest_volume(file_source(ct_nifti), cfg, store)
    changed = ingest_volume(file_source(ct_nifti), make_cfg("preprocess.intensity.ct_window=[-500,500]"), store)
    assert changed["volume_id"] != first["volume_id"] and changed["skipped"] is False
    assert changed["preprocess_hash"] != first["preprocess_hash"]
    assert open_volume(store, first["volume_id"]).attrs["intensity"]["window"] == [-1024.0, 3071.0]
    assert open_volume(store, changed["volume_id"]).attrs["intensity"]["window"] == [-500.0, 500.0]


def test_crash_mid_write_on_a_local_store_is_invisible_and_rerun_succeeds(tmp_path, store, cfg, ct_nifti, monkeypatch):
    _crash_after_first_level(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_volume(file_source(ct_nifti), cfg, store)
    volumes = tmp_path / "store" / "volumes"
    assert os.listdir(volumes) == []  # the staging directory is removed, nothing was published
    monkeypatch.undo()
    row = ingest_volume(file_source(ct_nifti), cfg, store)
    assert row["status"] == "ok" and row["skipped"] is False
    assert open_volume(store, row["volume_id"]).shape == tuple(row["shape"])


def test_incomplete_leftover_is_refused_by_the_reader_and_overwritten(store, cfg, ct_nifti):
    row = ingest_volume(file_source(ct_nifti), cfg, store)
    os.remove(os.path.join(row["path"], "zarr.json"))  # as a killed object-store write leaves it
    with pytest.raises(VolumeNotFoundError, match="incomplete"):
        open_volume(store, row["volume_id"])
    again = ingest_volume(file_source(ct_nifti), cfg, store)
    assert again["skipped"] is False and again["volume_id"] == row["volume_id"]
    assert open_volume(store, row["volume_id"]).shape == tuple(row["shape"])


def test_missing_volume_error_names_the_id(store):
    with pytest.raises(VolumeNotFoundError, match="0123abcd"):
        open_volume(store, "0123abcd")


@pytest.fixture
def memory_root() -> Iterator[str]:
    """A fresh root on fsspec's in-memory filesystem: an object store without rename."""
    root = f"memory://test-{uuid.uuid4().hex[:8]}"
    yield root
    fsspec.filesystem("memory").rm(root.removeprefix("memory://"), recursive=True)


def test_object_store_writes_metadata_last_and_a_crash_is_not_readable(memory_root, cfg, ct_nifti, monkeypatch):
    store = Store(memory_root + "/store")
    _crash_after_first_level(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        ingest_volume(file_source(ct_nifti), cfg, store)
    written = store.fs.find(store.root)
    assert written and not any(p.endswith(".ome.zarr/zarr.json") for p in written)  # arrays only
    volume_id = written[0].split("/volumes/")[1].split(".ome.zarr")[0]
    with pytest.raises(VolumeNotFoundError, match="incomplete"):
        open_volume(store, volume_id)
    monkeypatch.undo()
    row = ingest_volume(file_source(ct_nifti), cfg, store)
    assert row["volume_id"] == volume_id and row["skipped"] is False
    with quiet_numcodecs_warning():
        Image.from_zarr(zarr.open_group(store.zarr_store(row["path"], read_only=True), mode="r"))
    assert open_volume(store, volume_id).read_crop((0, 0, 0), (4, 4, 4)).shape == (4, 4, 4)
    assert ingest_volume(file_source(ct_nifti), cfg, store)["skipped"] is True


def test_remote_source_is_copied_and_hashed_like_the_local_file(memory_root, store, cfg, ct_nifti):
    url = f"{memory_root}/in/ct.nii.gz"
    fsspec.filesystem("memory").pipe(url, ct_nifti.read_bytes())
    local = ingest_volume(file_source(ct_nifti), cfg, store)
    remote = ingest_volume(Source(uri=url, kind="file", files=[url]), cfg, store)
    assert remote["sha256"] == local["sha256"] and remote["source"] == url


def test_remote_ambiguous_and_missing_sources_are_rejected(memory_root, store, cfg, ct_nifti):
    memory = fsspec.filesystem("memory")
    memory.pipe(f"{memory_root}/in/x.nii.gz", ct_nifti.read_bytes())
    memory.pipe(f"{memory_root}/in/x.nii", b"other")
    row = ingest_volume(file_source(f"{memory_root}/in/x.nii.gz"), cfg, store)
    assert row["reason"] == Reason.AMBIGUOUS_SOURCE
    row = ingest_volume(file_source(f"{memory_root}/in/absent.nii.gz"), cfg, store)
    assert row["reason"] == Reason.UNREADABLE and "absent.nii.gz" in row["message"]


def test_remote_metaimage_header_brings_its_data_file(memory_root, tmp_path, store, cfg, ct_image):
    sitk.WriteImage(ct_image, str(tmp_path / "ct.mhd"))  # writes ct.mhd + ct.raw
    memory = fsspec.filesystem("memory")
    for name in ("ct.mhd", "ct.raw"):
        memory.pipe(f"{memory_root}/in/{name}", (tmp_path / name).read_bytes())
    row = ingest_volume(file_source(f"{memory_root}/in/ct.mhd"), cfg, store)
    assert row["status"] == "ok", row["message"]
    assert row["shape"] == list(sitk.GetArrayViewFromImage(ct_image).shape)
