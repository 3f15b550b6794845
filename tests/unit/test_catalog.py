"""Catalog merge/write semantics and the dataset fingerprint."""

from pathlib import Path

import pytest

from med3dinsight.ingest.fingerprint import compute_fingerprint
from med3dinsight.ingest.pipeline import summarize
from med3dinsight.io.catalog import merge_rows, ok_volume_ids, read_catalog, write_catalog
from med3dinsight.io.store import Store


def row(source: str, status: str = "ok", spacing=(1.0, 1.0, 1.0), shape=(10, 20, 20), **kw) -> dict:
    base = {
        "volume_id": f"v-{source}", "source": source, "status": status, "reason": None if status == "ok" else "X",
        "modality": "CT", "spacing": list(spacing), "shape": list(shape),
        "min": -1000.0, "max": 1000.0, "mean": 0.0, "std": 10.0, "p00_5": -900.0, "p99_5": 900.0,
    }
    return base | kw


def test_write_is_skipped_when_unchanged(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    rows = [row("a"), row("b", status="rejected")]
    assert write_catalog(store, rows)
    mtime = Path(store.catalog_path).stat().st_mtime_ns
    assert not write_catalog(store, rows)
    assert Path(store.catalog_path).stat().st_mtime_ns == mtime
    assert read_catalog(store)[0]["spacing"] == [1.0, 1.0, 1.0]
    assert ok_volume_ids(store) == ["v-a"]
    assert not list(Path(store.catalog_path).parent.glob("*.tmp"))


def test_merge_replaces_rows_of_the_same_source() -> None:
    merged = merge_rows([row("a"), row("b")], [row("b", volume_id="new"), row("c")])
    assert [(r["source"], r["volume_id"]) for r in merged] == [("a", "v-a"), ("b", "new"), ("c", "v-c")]


def test_fingerprint() -> None:
    rows = [row("a", spacing=(0.8, 0.8, 5.0)), row("b", spacing=(0.7, 0.7, 3.0)), row("c", status="rejected"),
            row("a_label", spacing=(9.0, 9.0, 9.0), is_label=True)]
    fp = compute_fingerprint(rows)
    assert (fp["num_ok"], fp["num_rejected"], fp["num_label_maps"]) == (3, 1, 1)
    ct = fp["modalities"]["CT"]
    assert ct["spacing_median"] == pytest.approx([0.75, 0.75, 4.0])
    assert ct["anisotropic"] and ct["anisotropy_ratio"] == pytest.approx(4.0 / 0.75)


@pytest.mark.parametrize(
    ("statuses", "ratio", "code"),
    [(["ok", "rejected"], 1.0, 0), (["rejected", "rejected"], 1.0, 1), (["ok", "rejected"], 0.4, 1),
     (["ok", "ok", "rejected"], 0.5, 0)],
)
def test_exit_code(statuses: list[str], ratio: float, code: int) -> None:
    rows = [row(str(i), status=s) for i, s in enumerate(statuses)]
    assert summarize(rows, ratio).exit_code == code
