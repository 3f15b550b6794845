"""The config system: files merged in order, overrides last, loud failures naming the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from med3dinsight.config import ConfigError, config_to_dict, load_config
from med3dinsight.config.ingest import IngestConfig

ROOT = Path(__file__).resolve().parents[2]


def test_files_merge_in_order_then_overrides(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text("input: x\nzarr: {clevel: 5, levels: 4}\n")
    b.write_text("zarr: {clevel: 7}\n")
    cfg = load_config(IngestConfig, [a, b], ["zarr.levels=2", "preprocess.target_spacing=[1,1,2]"])
    assert (cfg.input, cfg.zarr.clevel, cfg.zarr.levels) == ("x", 7, 2)
    assert cfg.preprocess.target_spacing == [1.0, 1.0, 2.0]


def test_round_trip_through_plain_dict() -> None:
    cfg = load_config(IngestConfig, overrides=["input=x", "store=s3://b/p"])
    assert load_config(IngestConfig, data=config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["input=x", "zarr.nope=1"], "zarr.nope"),
        (["input=x", "zarr.clevel=high"], "zarr.clevel"),
        (["input=x", "zarr.levels=1"], "zarr.levels"),
        (["input=x", "zarr.codec=gzip"], "zarr.codec"),
        (["input=x", "zarr.codec=blosc-zstd", "zarr.clevel=12"], "zarr.clevel"),
        (["input=x", "zarr.chunk=[64,64,64]", "zarr.shard=[128,96,128]"], "zarr.shard"),
        (["input=x", "zarr.chunk=[64,64,64]", "zarr.shard=[32,64,64]"], "zarr.shard"),
        (["input=x", "preprocess.orientation=LLS"], "preprocess.orientation"),
        (["input=x", "preprocess.target_spacing=[1,0,1]"], "preprocess.target_spacing"),
        (["input=x", "preprocess.intensity.ct_window=[100,-100]"], "ct_window"),
        (["input=x", "max_failure_ratio=2"], "max_failure_ratio"),
        ([], "input"),
        (["input"], "key=value"),
    ],
)
def test_bad_config_names_the_key(overrides: list[str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.").replace("[", r"\[")):
        load_config(IngestConfig, overrides=overrides)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(IngestConfig, ["/nonexistent.yaml"])


def test_shipped_configs_load() -> None:
    cfg = load_config(
        IngestConfig, [ROOT / "configs/ingest.yaml", ROOT / "configs/quickstart/ingest.yaml"], ["input=x"]
    )
    assert cfg.preprocess.target_spacing == [1.5, 1.5, 1.5]


def test_entry_point_exits_2_naming_the_key() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jobs.ingest", "--config", "configs/ingest.yaml", "input=x", "zarr.bogus=1"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert out.returncode == 2
    assert "zarr.bogus" in out.stderr


def test_relative_local_store_is_pinned_to_cwd(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(IngestConfig, overrides=["input=x", "store=storage/local"]).store == str(
        tmp_path / "storage" / "local"
    )
    assert load_config(IngestConfig, overrides=["input=x", "store=s3://bucket/m3d"]).store == "s3://bucket/m3d"
