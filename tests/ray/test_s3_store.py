"""Ingest from and into an S3 store served by moto on loopback, read back through the reader API."""

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.ingest.pipeline import run_ingest
from med3dinsight.io.catalog import read_catalog
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume

from .conftest import free_port
from .volumes import write_inputs

pytestmark = pytest.mark.ray


@pytest.fixture
def s3_options() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {"key": "testing", "secret": "testing", "endpoint_url": f"http://127.0.0.1:{port}"}
    finally:
        server.stop()


def test_s3_round_trip(local_ray: None, tmp_path: Path, s3_options: dict[str, str]) -> None:
    expected = write_inputs(tmp_path / "raw")
    store = Store("s3://m3d-bucket/store", s3_options)
    store.fs.mkdir("m3d-bucket")
    store.fs.put(str(tmp_path / "raw") + "/", "m3d-bucket/raw/", recursive=True)
    options = [f"store_options.{k}={v}" for k, v in s3_options.items()]
    cfg = load_config(
        IngestConfig,
        overrides=["input=s3://m3d-bucket/raw", f"store={store.root}", "zarr.chunk=[16,16,16]",
                   "ray.progress_bars=false", *options],
    )
    summary = run_ingest(cfg)
    assert summary.statuses == {"ok": 2, "rejected": 2}
    rows = {r["source"].rsplit("/", 1)[-1]: r for r in read_catalog(store)}
    assert {name: r["status"] for name, r in rows.items()} == expected

    volume = open_volume(store, rows["ct_a.nii.gz"]["volume_id"])
    original = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "raw" / "ct_a.nii.gz")))
    np.testing.assert_array_equal(volume.read_crop((4, 5, 6), (8, 8, 8)), original[4:12, 5:13, 6:14])
    assert store.fs.exists(store.fingerprint_path)
    again = run_ingest(cfg)
    assert again.skipped == 2
    assert all(r["source_stamp"] for r in again.rows if r["status"] == "ok")  # the S3 ETag: no re-download
