"""A 2-trial Tune sweep of fine-tuning on local Ray: one Ray Train run per trial, results.csv and the best
config written, and resubmitting the finished sweep restores it instead of rerunning."""

import csv
import dataclasses
from pathlib import Path

import pytest

from med3dinsight.config import load_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.config.sweep import SweepConfig
from med3dinsight.io.store import Store
from med3dinsight.tune.sweep import run_sweep

from .train_store import CONFIGS, build_train_store

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def store(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_train_store(tmp_path_factory.mktemp("sweep"))


def test_two_trial_sweep_writes_results_and_best_config(store: Store) -> None:
    cfg = load_config(SweepConfig, [CONFIGS / "quickstart/sweep.yaml"], [f"store={store.root}", "experiment=sw"])
    cfg = dataclasses.replace(
        cfg, base=[str(CONFIGS / "finetune/seg.yaml"), str(CONFIGS / "quickstart/finetune.yaml")],
        overrides=["max_steps=6", "val_every=3", "report_every=3", "checkpoint.every_steps=3", "scaling.num_workers=1",
                   "backbone.img_size=[16,16,16]", "backbone.num_levels=2"],
    )  # fmt: skip
    outputs = run_sweep(cfg)
    assert outputs["trials"] == 2
    with open(outputs["results"]) as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["config/optim.lr"]) for r in rows) == [1e-3, 3e-3]
    assert all("val_mean_dice" in r for r in rows)
    best = load_config(FinetuneConfig, [outputs["best_config"]])
    assert best.optim.lr == outputs["best"]["params"]["optim.lr"] and best.max_steps == 6
    trial_runs = sorted(p.name for p in (Path(store.root) / "runs").iterdir() if p.name.startswith("sw-"))
    assert len(trial_runs) == 2  # one Ray Train run folder per trial
    again = run_sweep(cfg)  # restored from runs/sw/: nothing left to run
    assert again["trials"] == 2 and again["best"]["params"] == outputs["best"]["params"]
