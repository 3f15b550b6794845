"""Pretraining on local Ray: 2 CPU workers, loss falls, a SIGKILLed worker resumes from the checkpoint, a
finished experiment resubmitted resumes (and trains no further), the export loads."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from med3dinsight.config import load_config
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.io.store import Store
from med3dinsight.models.export import load_encoder
from med3dinsight.train.pretrain import run_pretrain

from .train_store import CONFIGS, EMBEDDING_DIM, build_train_store, kill_a_worker_when

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def store(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Store:
    return build_train_store(tmp_path_factory.mktemp("pretrain"))


def config(store: Store, experiment: str, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, [CONFIGS / "pretrain.yaml", CONFIGS / "quickstart/pretrain.yaml"], [
        f"store={store.root}", f"experiment={experiment}", f"model.psat.out_dim={EMBEDDING_DIM}",
        "model.backbone.img_size=[16,16,16]", "model.backbone.num_levels=2", "data.batch_size=4",
        "max_steps=24", "checkpoint.every_steps=4", "report_every=4", "optim.lr=2e-3", *extra])  # fmt: skip


def test_two_workers_loss_falls_and_a_killed_worker_resumes(store: Store) -> None:
    cfg = config(store, "killed")
    run = Path(store.root) / "runs" / "killed"
    with ThreadPoolExecutor(1) as pool:
        # Ray Train writes its snapshot when it has registered a checkpoint: kill then, mid-run
        killed = pool.submit(kill_a_worker_when, run / "checkpoint_manager_snapshot.json")
        outputs = run_pretrain(cfg)
        assert killed.result()["pid"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 25)) and all(r["world_size"] == 2 for r in rows)
    restarted = [r for r in rows if r["restarts"] >= 1]
    assert restarted and restarted[0]["step"] > 1, "the restarted workers began at step 1, not at a checkpoint"
    assert restarted[0]["step"] % 4 == 1  # resumed right after a checkpoint (every 4 steps)
    position = json.loads((run / "data_position.json").read_text())
    assert position == {"items": 24 * 2 * 4, "step": 24}  # items = steps x workers x batch
    totals = [r["total"] for r in rows]
    assert np.mean(totals[-6:]) < np.mean(totals[:6]), totals
    for name in ("train_log.txt", "loss_curves.png", "config.yaml"):
        assert (run / name).stat().st_size > 0
    encoder = load_encoder(outputs["model"])
    record = encoder.record
    assert record["preprocessing"]["crop"] == {"size_zyx": [16, 16, 16], "slice_position": "crop", "num_slice_bins": 32}
    assert record["preprocessing"]["ingest"]["preprocess"]["target_spacing"] == [1.5, 1.5, 1.5]
    assert record["embedding_dim"] == EMBEDDING_DIM


def test_resubmitting_a_finished_experiment_resumes_without_training(store: Store) -> None:
    run = Path(store.root) / "runs" / "killed"
    if not (run / "metrics.jsonl").exists():
        pytest.skip("needs the run of the previous test")
    before = (run / "metrics.jsonl").read_text()
    outputs = run_pretrain(config(store, "killed"))
    assert (run / "metrics.jsonl").read_text() == before  # no step was trained again
    assert Path(outputs["model"], "encoder.safetensors").is_file()
