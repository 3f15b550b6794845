"""Serve config: the shipped YAML files load, resources fit ray_cluster.yaml, bad values fail loudly."""

from pathlib import Path

import pytest
import yaml

from med3dinsight.config import ConfigError, load_config
from med3dinsight.config.serve import ServeConfig
from med3dinsight.serving.app import deployment_options
from med3dinsight.serving.deploy import endpoint_url

ROOT = Path(__file__).parents[3]


def fits_a_node_type(cfg: ServeConfig) -> list[str]:
    nodes = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())["available_node_types"]
    fits = []
    for name, node in nodes.items():
        resources = node["resources"]
        accelerator = cfg.replicas.accelerator_type
        if (resources.get("CPU", 0) >= cfg.replicas.num_cpus and resources.get("GPU", 0) >= cfg.replicas.num_gpus
                and (accelerator is None or resources.get(f"accelerator_type:{accelerator}", 0) > 0)):  # fmt: skip
            fits.append(name)
    return fits


@pytest.mark.parametrize("files", [["serve.yaml"], ["serve.yaml", "quickstart/serve.yaml"]])
def test_shipped_configs_load_and_fit_the_cluster(files):
    cfg = load_config(ServeConfig, [ROOT / "configs" / f for f in files], ["model=m"])
    assert cfg.http.host == "127.0.0.1"
    assert fits_a_node_type(cfg), f"replica resources {cfg.replicas} fit no node type of ray_cluster.yaml"


def test_base_config_asks_for_an_l40s_replica_with_autoscaling():
    cfg = load_config(ServeConfig, [ROOT / "configs" / "serve.yaml"], ["model=m"])
    options = deployment_options(cfg)
    assert options["ray_actor_options"] == {"num_cpus": 3, "num_gpus": 1, "accelerator_type": "L40S"}
    assert options["autoscaling_config"]["max_replicas"] == 8 and "num_replicas" not in options
    assert options["max_ongoing_requests"] >= cfg.batching.max_batch_size
    assert fits_a_node_type(cfg) == ["gpu_caption"]


@pytest.mark.parametrize(
    ("override", "key"),
    [("batching.max_ongoing_requests=2", "max_ongoing_requests"), ("crop.mode=resize", "crop.mode"),
     ("replicas.accelerator_type=H200", "accelerator_type"), ("http.port=0", "http.port"),
     ("default_plane=oblique", "default_plane"), ("limits.max_upload_mb=0", "max_upload_mb"),
     ("replicas.min_replicas=5", "min_replicas"), ("unknown=1", "unknown")],
)  # fmt: skip
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(ServeConfig, overrides=["model=m", override])


def test_model_is_required_and_url_is_loopback():
    with pytest.raises(ConfigError, match="model"):
        load_config(ServeConfig)
    cfg = load_config(ServeConfig, overrides=["model=m", "http.host=0.0.0.0", "http.port=8123"])
    assert endpoint_url(cfg) == "http://127.0.0.1:8123"


def test_app_builder_builds_without_deploying():
    from ray.serve import Application

    from serve.app import app_builder

    app = app_builder({"config": str(ROOT / "configs" / "serve.yaml"), "model": "m", "replicas.autoscaling": "false"})
    assert isinstance(app, Application)


def test_jobs_serve_refuses_a_missing_model_before_starting_ray(tmp_path, capsys):
    from jobs.serve import main

    assert main(["--config", str(ROOT / "configs" / "serve.yaml"), "model=nope", f"store={tmp_path}"]) == 1
    assert "no export" in capsys.readouterr().err
