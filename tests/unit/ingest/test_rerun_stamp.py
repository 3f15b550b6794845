"""A rerun skips an unchanged source from its file-system stamp alone, without reading its bytes."""

from __future__ import annotations

import os
import shutil

import pytest

from med3dinsight.ingest import volume as volume_module
from med3dinsight.ingest.reading import source_stamp
from med3dinsight.ingest.volume import ingest_volume

from .ingest_helpers import file_source, make_cfg


@pytest.fixture
def first_row(store, ct_nifti):
    row = ingest_volume(file_source(ct_nifti), make_cfg(), store)
    assert row["status"] == "ok" and row["skipped"] is False and row["source_stamp"]
    return row


@pytest.fixture
def hashes(monkeypatch) -> list[list[str]]:
    """Records every files_sha256 call (each one reads a source's bytes)."""
    calls: list[list[str]] = []
    real = volume_module.files_sha256

    def counting(paths: list[str]) -> str:
        calls.append(paths)
        return real(paths)

    monkeypatch.setattr(volume_module, "files_sha256", counting)
    return calls


def test_unchanged_source_is_skipped_without_hashing(store, ct_nifti, first_row, hashes):
    row = ingest_volume(file_source(ct_nifti), make_cfg(), store, previous=first_row)
    assert hashes == []
    assert row["skipped"] is True
    assert {k: v for k, v in row.items() if k != "skipped"} == {k: v for k, v in first_row.items() if k != "skipped"}


def test_touched_source_is_hashed_again_and_still_matches(store, ct_nifti, first_row, hashes):
    stat = os.stat(ct_nifti)
    os.utime(ct_nifti, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    row = ingest_volume(file_source(ct_nifti), make_cfg(), store, previous=first_row)
    assert len(hashes) == 1
    assert row["skipped"] is True and row["volume_id"] == first_row["volume_id"]
    assert row["source_stamp"] != first_row["source_stamp"]


def test_changed_config_or_missing_volume_is_processed(store, ct_nifti, first_row, hashes):
    new_cfg = make_cfg("zarr.levels=2", "zarr.codec=zstd")
    changed = ingest_volume(file_source(ct_nifti), new_cfg, store, previous=first_row)
    assert changed["skipped"] is False and changed["volume_id"] != first_row["volume_id"]
    shutil.rmtree(first_row["path"])
    again = ingest_volume(file_source(ct_nifti), make_cfg(), store, previous=first_row)
    assert again["skipped"] is False and again["volume_id"] == first_row["volume_id"]
    assert len(hashes) == 2


def test_stamp_is_none_for_a_missing_file(tmp_path):
    assert source_stamp(file_source(tmp_path / "gone.nii.gz"), {}) is None
