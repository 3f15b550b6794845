"""`run_sweep(cfg)`: Ray Tune over a training stage's hyperparameters, each trial one Ray Train run.

Pattern (what Ray 2.60's Train V2 supports; `Tuner(TorchTrainer)` does not): a function trainable builds the
trial's stage config and calls `run_pretrain` / `run_finetune`, whose TorchTrainer gets
`ray.tune.integration.ray_train.TuneReportCallback()`, forwarding rank 0's reports to Tune (and to ASHA).
The trainable itself reserves 0.01 CPU (Tune refuses an empty request); the Train workers reserve theirs.

Outputs: runs/<experiment>/ (Tune's state: resubmitting resumes unfinished trials), results.csv (one row per
trial: its parameters and last metrics), best_config.yaml (the best trial's full stage config), best.json.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from med3dinsight.config import config_to_dict, load_config, save_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.config.sweep import SweepConfig
from med3dinsight.io.store import Store
from med3dinsight.train.ray_config import storage_args

log = logging.getLogger(__name__)
SCHEMAS: dict[str, type] = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}


def search_space(spec: dict[str, Any]) -> dict[str, Any]:
    """Tune's param_space from {key: {distribution: args}} (see SweepConfig.search_space)."""
    from ray import tune

    space = {}
    for key, dist in spec.items():
        (kind, args), = dist.items()
        args = list(args)
        space[key] = {
            "loguniform": lambda a: tune.loguniform(float(a[0]), float(a[1])),
            "uniform": lambda a: tune.uniform(float(a[0]), float(a[1])),
            "randint": lambda a: tune.randint(int(a[0]), int(a[1])),
            "choice": tune.choice,
            "grid": tune.grid_search,
        }[kind](args)
    return space


def trial_overrides(params: dict[str, Any]) -> list[str]:
    """Dotlist overrides of one trial's parameters (lists and strings as JSON, which omegaconf parses)."""
    return [f"{k}={json.dumps(v) if not isinstance(v, int | float) else v}" for k, v in sorted(params.items())]


def base_stage_dict(cfg: SweepConfig) -> dict[str, Any]:
    """The stage config shared by every trial (base files + sweep overrides) as a plain dict.

    Read once by the driver: trials run in other working directories, often on other nodes.
    """
    overrides = [*cfg.overrides, f"experiment={cfg.experiment}", f"store={cfg.store}"]
    return config_to_dict(load_config(SCHEMAS[cfg.stage], cfg.base, overrides))


def stage_config(cfg: SweepConfig, params: dict[str, Any], experiment: str, base: dict[str, Any] | None = None) -> Any:
    """The stage config of one trial: base files, sweep overrides, trial parameters, its run name."""
    base = base_stage_dict(cfg) if base is None else base
    return load_config(SCHEMAS[cfg.stage], data=base, overrides=[*trial_overrides(params), f"experiment={experiment}"])


def default_objective(cfg: SweepConfig) -> tuple[str, str]:
    """(metric, mode) of the sweep: the config's, else pretrain total/min, finetune validation metric/max."""
    if cfg.metric is not None:
        return cfg.metric, cfg.mode or "max"
    if cfg.stage == "pretrain":
        return "total", cfg.mode or "min"
    return stage_config(cfg, {}, f"{cfg.experiment}-probe").metric, cfg.mode or "max"


def concurrent_trials(cfg: SweepConfig, resources: dict[str, float]) -> int:
    """How many trials fit at once: the cluster's CPUs and GPUs over one trial's workers (and readers)."""
    if cfg.max_concurrent_trials:
        return cfg.max_concurrent_trials
    stage = stage_config(cfg, {}, f"{cfg.experiment}-probe")
    workers = max(1, stage.scaling.num_workers)
    cpus = workers * stage.scaling.cpus_per_worker
    if cfg.stage == "pretrain":
        cpus += stage.data.reader_actors[0] * stage.data.reader_cpus
    fits = [math.floor(resources.get("CPU", 0) / cpus) if cpus else 10**6]
    if stage.scaling.use_gpu:
        fits.append(math.floor(resources.get("GPU", 0) / (workers * stage.scaling.gpus_per_worker)))
    return max(1, min(fits))


def _trial(params: dict[str, Any], sweep: dict[str, Any], base: dict[str, Any]) -> None:
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    cfg = load_config(SweepConfig, data=sweep)
    experiment = f"{cfg.experiment}-{tune.get_context().get_trial_id()}"
    stage = stage_config(cfg, params, experiment, base)
    if cfg.stage == "pretrain":
        from med3dinsight.train.pretrain import run_pretrain

        run_pretrain(stage, callbacks=[TuneReportCallback()])
    else:
        from med3dinsight.train.finetune import run_finetune

        run_finetune(stage, callbacks=[TuneReportCallback()])


def run_sweep(cfg: SweepConfig) -> dict[str, Any]:
    """Run (or resume) the sweep on the connected Ray cluster.

    Returns:
        results (CSV path), best_config (YAML path), best (the best trial's parameters and metric), trials.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    store = Store(cfg.store, cfg.store_options)
    metric, mode = default_objective(cfg)
    max_t = stage_config(cfg, {}, f"{cfg.experiment}-probe").max_steps
    scheduler = FIFOScheduler()
    if cfg.asha.enabled:
        scheduler = ASHAScheduler(time_attr="step", max_t=max_t, grace_period=min(cfg.asha.grace_period, max_t),
                                  reduction_factor=cfg.asha.reduction_factor)  # fmt: skip
    trial = tune.with_parameters(_trial, sweep=config_to_dict(cfg), base=base_stage_dict(cfg))
    trainable = tune.with_resources(trial, {"CPU": 0.01})
    storage = storage_args(store)
    path = f"{store.path('runs')}/{cfg.experiment}"
    if tune.Tuner.can_restore(path, storage.get("storage_filesystem")):
        log.info("resuming sweep %s from %s", cfg.experiment, path)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                   storage_filesystem=storage.get("storage_filesystem"))  # fmt: skip
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=search_space(cfg.search_space),
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, scheduler=scheduler, num_samples=cfg.num_samples,
                max_concurrent_trials=concurrent_trials(cfg, ray.cluster_resources()),
            ),  # fmt: skip
            run_config=tune.RunConfig(name=cfg.experiment, **storage),
        )
    grid = tuner.fit()
    frame = grid.get_dataframe()
    results = store.path("runs", cfg.experiment, "results.csv")
    store.fs.pipe_file(results, frame.to_csv(index=False).encode())
    best = grid.get_best_result(metric=metric, mode=mode, filter_nan_and_inf=True)
    best_cfg = stage_config(cfg, best.config, f"{cfg.experiment}-best")
    best_config = store.path("runs", cfg.experiment, "best_config.yaml")
    save_config(best_cfg, best_config, store.fs)
    summary = {"params": best.config, "metric": metric, "value": (best.metrics or {}).get(metric),
               "trial_path": best.path, "num_trials": len(grid)}  # fmt: skip
    store.fs.pipe_file(store.path("runs", cfg.experiment, "best.json"), json.dumps(summary, indent=2).encode())
    return {"results": results, "best_config": best_config, "best": summary, "trials": len(grid)}
