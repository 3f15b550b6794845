"""Ray Train scaling and run configs from our config sections (storage under the store's runs/)."""

from __future__ import annotations

from typing import Any

from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig

from med3dinsight.config.train import CheckpointingConfig, TrainScalingConfig
from med3dinsight.io.store import Store


def scaling_config(cfg: TrainScalingConfig) -> ScalingConfig:
    """ScalingConfig: fixed or elastic (min, max) workers, per-worker CPU/GPU, accelerator type; 0 = local mode."""
    workers: int | tuple[int, int] = cfg.num_workers
    if cfg.min_workers is not None and cfg.num_workers > 0 and cfg.min_workers < cfg.num_workers:
        workers = (cfg.min_workers, cfg.num_workers)
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = cfg.gpus_per_worker
    return ScalingConfig(
        num_workers=workers,
        use_gpu=cfg.use_gpu,
        resources_per_worker=resources,
        accelerator_type=cfg.accelerator_type,
    )


def storage_args(store: Store) -> dict[str, Any]:
    """RunConfig storage_path (and storage_filesystem for remote stores with options): the store's runs/."""
    if store.is_local:
        return {"storage_path": store.path("runs")}
    import pyarrow.fs

    fs = pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(store.fs))
    return {"storage_path": store.path("runs").split("://", 1)[1], "storage_filesystem": fs}


def run_config(store: Store, name: str, ckpt: CheckpointingConfig, callbacks: list[Any] | None = None,
               score: tuple[str, str] | None = None) -> RunConfig:  # fmt: skip
    """RunConfig writing to runs/<name>/ of the store, restarting failed workers from the latest checkpoint.

    Args:
        store: the store; name: the run folder name (a rerun with the same name resumes).
        ckpt: checkpoint frequency/retention and max_failures.
        callbacks: Ray Train user callbacks (e.g. Tune's TuneReportCallback).
        score: (metric, "max"|"min") to keep the best checkpoints instead of the latest.
    """
    checkpoint_config = CheckpointConfig(num_to_keep=ckpt.num_to_keep)
    if score is not None:
        checkpoint_config = CheckpointConfig(
            num_to_keep=ckpt.num_to_keep, checkpoint_score_attribute=score[0], checkpoint_score_order=score[1]
        )
    return RunConfig(
        name=name,
        failure_config=FailureConfig(max_failures=ckpt.max_failures),
        checkpoint_config=checkpoint_config,
        callbacks=callbacks or [],
        **storage_args(store),
    )
