"""Config pieces shared by the training stages (pretrain, finetune, sweep): resources, optimiser, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "linear")


@dataclass(slots=True)
class TrainScalingConfig:
    """Ray Train workers and what each reserves (match a node type of ray_cluster.yaml)."""

    num_workers: int = 2
    """Data-parallel workers (the maximum when `min_workers` is set). 0 runs the loop in this process (Train
    local mode: no Ray actors, no DDP; for debugging and unit tests)."""
    min_workers: int | None = None
    """Elastic training: ScalingConfig(num_workers=(min_workers, num_workers)); the run starts as soon as
    `min_workers` fit and grows when the cluster does. None: a fixed worker count."""
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    """> 0 trains on CUDA (NCCL), else on CPU (gloo)."""
    accelerator_type: str | None = None
    """e.g. H200: the workers only go to nodes with `accelerator_type:H200` (ray_cluster.yaml gpu_train)."""

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"scaling.num_workers must be >= 0, got {self.num_workers}")
        if self.min_workers is not None and not 1 <= self.min_workers <= self.num_workers:
            raise ValueError(
                f"scaling.min_workers must be in 1..num_workers ({self.num_workers}), got {self.min_workers}"
            )
        if self.cpus_per_worker < 0 or self.gpus_per_worker < 0:
            raise ValueError(
                f"scaling.cpus_per_worker and gpus_per_worker must be >= 0, got "
                f"{self.cpus_per_worker}, {self.gpus_per_worker}"
            )

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0


@dataclass(slots=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (authors' pretraining: Adam, lr 1e-5, weight decay 1e-5)."""

    name: str = "adam"
    """adam (L2 weight decay, as the authors), adamw (decoupled) or sgd (momentum 0.9)."""
    lr: float = 1e-5
    weight_decay: float = 1e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 0.0
    """Clip the global gradient norm to this (0: no clipping)."""
    schedule: str = "constant"
    """constant, cosine (to min_lr_ratio * lr at the last step) or linear decay, after `warmup_steps`."""
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {self.name!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.lr <= 0:
            raise ValueError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.warmup_steps < 0:
            raise ValueError("optim.weight_decay, grad_clip and warmup_steps must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be 2 values in [0, 1), got {self.betas}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(slots=True)
class AugmentConfig:
    """Random 3D augmentations applied to each training crop (all off at their zero values)."""

    flip_prob: float = 0.0
    """Probability of mirroring the crop along each array axis independently. A flip along the captioned
    slice's normal mirrors its position in the crop (kept consistent); in-plane flips mirror the slice
    image relative to its 2D embedding, so keep this low for pretraining."""
    intensity_scale: float = 0.0
    """Multiply by a factor drawn from [1 - s, 1 + s]."""
    intensity_shift: float = 0.0
    """Add an offset drawn from [-s, s] (intensities are in [0, 1] after normalisation)."""
    gamma: float = 0.0
    """Raise to exp(u), u drawn from [-g, g] (on [0, 1] intensities)."""
    noise_std: float = 0.0
    """Add Gaussian noise of this standard deviation."""

    def __post_init__(self) -> None:
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"augment.flip_prob must be in [0, 1], got {self.flip_prob}")
        for key in ("intensity_scale", "intensity_shift", "gamma", "noise_std"):
            if getattr(self, key) < 0:
                raise ValueError(f"augment.{key} must be >= 0, got {getattr(self, key)}")
        if self.intensity_scale >= 1:
            raise ValueError(f"augment.intensity_scale must be < 1, got {self.intensity_scale}")


@dataclass(slots=True)
class IntensityInputConfig:
    """How stored voxels become model inputs in [0, 1] (recorded in the exported encoder's preprocessing)."""

    ct_window: list[float] = field(default_factory=lambda: [-1000.0, 1000.0])
    """CT (stored as HU): clip to [low, high] HU, scale to [0, 1]. MR is stored in [0, 1] already."""

    def __post_init__(self) -> None:
        if len(self.ct_window) != 2 or not self.ct_window[0] < self.ct_window[1]:
            raise ValueError(f"input.ct_window must be [low, high] with low < high, got {self.ct_window}")


@dataclass(slots=True)
class CheckpointingConfig:
    """When and how many training checkpoints go to runs/<experiment>/ in the store."""

    every_steps: int = 100
    """Checkpoint every N optimiser steps (and at the last step)."""
    num_to_keep: int = 2
    max_failures: int = 3
    """Worker failures (a killed process or node) that restart the run from the latest checkpoint; -1: no limit."""

    def __post_init__(self) -> None:
        if self.every_steps < 1 or self.num_to_keep < 1:
            raise ValueError("checkpoint.every_steps and checkpoint.num_to_keep must be >= 1")
        if self.max_failures < -1:
            raise ValueError(f"checkpoint.max_failures must be >= -1, got {self.max_failures}")
