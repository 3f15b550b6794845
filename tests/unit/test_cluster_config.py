"""ray_cluster.yaml is a valid Ray cluster-launcher config with the node types the stages need."""

import copy
from pathlib import Path

import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]


def test_validates_against_ray_schema() -> None:
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    validate_config(prepare_config(copy.deepcopy(config)))


def test_node_types() -> None:
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0
    assert types["cpu_ingest"]["max_workers"] > types["cpu_ingest"]["min_workers"]
    for gpu_type in ("gpu_caption", "gpu_train"):
        assert types[gpu_type]["resources"]["GPU"] >= 1
        assert types[gpu_type]["max_workers"] > types[gpu_type]["min_workers"]
    assert any("pip install" in c and "med3dinsight" in c for c in config["setup_commands"])


def test_runtime_env_ships_the_library() -> None:
    env = yaml.safe_load((ROOT / "runtime_env.yaml").read_text())
    assert env["py_modules"] == ["platform/med3dinsight"]
    assert (ROOT / env["py_modules"][0] / "__init__.py").is_file()
