"""A tiny store for the training unit tests: two ingested phantoms (no Ray), a synthetic caption run."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.data import ct_phantom, mr_phantom
from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io.catalog import write_catalog
from med3dinsight.io.sources import Source
from med3dinsight.io.store import Store
from med3dinsight.train.synthetic import write_synthetic_captions


@pytest.fixture(scope="package")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Volumes of shape (z, y, x) (20, 24, 28) (CT) and (16, 24, 24) (MR); caption run `default`, width 8."""
    root = tmp_path_factory.mktemp("train_store")
    store = Store(str(root / "store"))
    cfg = load_config(IngestConfig, overrides=["input=unused", f"store={store.root}", "zarr.chunk=[16,16,16]"])
    ct, _ = ct_phantom((20, 24, 28), (1.0, 1.0, 1.0), seed=1)
    mr, _ = mr_phantom((16, 24, 24), (1.0, 1.0, 1.0), seed=2)
    rows = []
    for name, image in (("ct.nii.gz", ct), ("mr.nii.gz", mr)):
        sitk.WriteImage(image, str(root / name))
        rows.append(ingest_volume(Source(str(root / name), "file", [str(root / name)]), cfg, store))
    assert all(r["status"] == "ok" for r in rows)
    write_catalog(store, rows)
    write_synthetic_captions(store, dim=8, slices_per_plane=2, qualities=("ok", "empty"))
    return store
