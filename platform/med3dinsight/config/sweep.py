"""Schema of the sweep config (configs/sweep.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from med3dinsight.config.common import RayConfig

STAGES = ("pretrain", "finetune")
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint", "grid")


@dataclass(slots=True)
class ASHAConfig:
    """Asynchronous successive halving on the training step (ray.tune.schedulers.ASHAScheduler)."""

    enabled: bool = True
    grace_period: int = 10
    """Steps every trial runs before it can be stopped (counted in the stage's `step`)."""
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise ValueError("asha.grace_period must be >= 1 and asha.reduction_factor >= 2")


@dataclass(slots=True)
class SweepConfig:
    """python -m jobs.sweep --config configs/sweep.yaml experiment=<name> store=<URL>"""

    experiment: str = MISSING
    """Sweep name: runs/<experiment>/ holds Tune's state, results.csv and best_config.yaml; trial i trains in
    runs/<experiment>-<trial id>/. Resubmitting the same name resumes the sweep."""
    stage: str = "pretrain"
    """pretrain or finetune: what each trial runs (as a Ray Train run)."""
    base: list[str] = field(default_factory=list)
    """The stage's YAML files, merged in order (e.g. [configs/pretrain.yaml, configs/quickstart/pretrain.yaml])."""
    overrides: list[str] = field(default_factory=list)
    """key=value overrides of the stage config applied to every trial."""
    search_space: dict[str, Any] = field(default_factory=dict)
    """stage key -> {distribution: args}: loguniform/uniform [low, high], randint [low, high), choice [values],
    grid [values]. E.g. {optim.lr: {loguniform: [1e-5, 1e-3]}, loss.mass: {choice: [0.9, 0.95]}}."""
    num_samples: int = 4
    """Trials drawn from the space (each grid point is run num_samples times)."""
    metric: str | None = None
    """Reported metric to optimise (default: pretrain `total`, minimised; finetune its validation metric)."""
    mode: str | None = None
    """min or max (default from the stage)."""
    max_concurrent_trials: int = 0
    """0: as many as the cluster's CPUs and GPUs fit, from one trial's worker resources."""
    asha: ASHAConfig = field(default_factory=ASHAConfig)
    seed: int = 0
    store: str = "storage/local"
    store_options: dict[str, str] = field(default_factory=dict)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not self.experiment or "/" in self.experiment:
            raise ValueError(f"experiment must be a plain name (no '/'), got {self.experiment!r}")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if not self.search_space:
            raise ValueError("search_space is empty: name at least one stage key to sweep")
        for key, spec in self.search_space.items():
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
                raise ValueError(f"search_space.{key} must be one of {{{'|'.join(DISTRIBUTIONS)}: args}}, got {spec}")
        if self.num_samples < 1 or self.max_concurrent_trials < 0:
            raise ValueError("num_samples must be >= 1 and max_concurrent_trials >= 0")
        if self.mode not in (None, "min", "max"):
            raise ValueError(f"mode must be min or max, got {self.mode!r}")
