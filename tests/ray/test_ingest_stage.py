"""The ingest stage end to end on a local Ray: catalog rows, readable volumes, idempotent reruns."""

import json
from pathlib import Path

import numpy as np
import pytest

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.ingest.pipeline import run_ingest
from med3dinsight.io.catalog import read_catalog
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume

from .volumes import write_inputs

pytestmark = pytest.mark.ray


def snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_ingest_rerun_and_config_change(local_ray: None, tmp_path: Path) -> None:
    expected = write_inputs(tmp_path / "raw")
    store_root = tmp_path / "store"
    overrides = [f"input={tmp_path / 'raw'}", f"store={store_root}", "zarr.chunk=[16,16,16]", "ray.progress_bars=false"]
    cfg = load_config(IngestConfig, overrides=overrides)

    summary = run_ingest(cfg)
    assert summary.exit_code == 0
    assert summary.statuses == {"ok": 2, "rejected": 2}
    rows = {Path(r["source"]).name: r for r in read_catalog(Store(str(store_root)))}
    assert {name: r["status"] for name, r in rows.items()} == expected
    assert rows["notes.xyz"]["reason"] and "notes.xyz" in rows["notes.xyz"]["message"]
    assert rows["broken.nii"]["reason"] == "TRUNCATED"
    for name in ("ct_a.nii.gz", "ct_b.mha"):
        volume = open_volume(Store(str(store_root)), rows[name]["volume_id"])
        assert volume.shape == (24, 32, 32)
        assert np.allclose(volume.spacing, (0.9, 0.9, 2.5))
    fingerprint = json.loads((store_root / "catalog" / "fingerprint.json").read_text())
    assert fingerprint["num_ok"] == 2 and "CT" in fingerprint["modalities"]

    before = snapshot(store_root)
    again = run_ingest(cfg)
    assert again.skipped == 2 and again.exit_code == 0
    assert snapshot(store_root) == before, "a rerun with the same config must change nothing"

    changed = run_ingest(load_config(IngestConfig, overrides=[*overrides, "preprocess.target_spacing=[1.8,1.8,2.5]"]))
    new_rows = {Path(r["source"]).name: r for r in read_catalog(Store(str(store_root)))}
    assert changed.skipped == 0
    assert new_rows["ct_a.nii.gz"]["volume_id"] != rows["ct_a.nii.gz"]["volume_id"]
    assert open_volume(Store(str(store_root)), new_rows["ct_a.nii.gz"]["volume_id"]).shape == (24, 16, 16)


def test_every_input_failing_exits_nonzero(local_ray: None, tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.nii.gz").write_bytes(b"\x1f\x8b garbage")
    cfg = load_config(IngestConfig, overrides=[f"input={tmp_path / 'raw'}", f"store={tmp_path / 'store'}"])
    summary = run_ingest(cfg)
    assert summary.exit_code == 1
    assert summary.statuses == {"rejected": 1}
