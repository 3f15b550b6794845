"""Schema of the pretraining config (configs/pretrain.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from med3dinsight.config.common import RayConfig
from med3dinsight.config.model import LossConfig, ModelConfig
from med3dinsight.config.train import (
    AugmentConfig,
    CheckpointingConfig,
    IntensityInputConfig,
    OptimConfig,
    TrainScalingConfig,
)

SMALL_VOLUME_POLICIES = ("error", "skip", "pad")
SLICE_POSITIONS = ("crop", "volume")


@dataclass(slots=True)
class PretrainDataConfig:
    """The streaming pipeline of training items (crop size = model.backbone.img_size)."""

    caption_run: str = "default"
    """captions/<caption_run>/ in the store."""
    quality: list[str] = field(default_factory=lambda: ["ok"])
    """Caption quality flags kept (ok, empty, degenerate, repetitive); the others are not trained on."""
    slice_position: str = "crop"
    """crop: the slice's relative position within the crop, (index - crop start) / crop size, what the
    model sees (each PSAT bin is then a fixed number of crop slices); volume: the caption stage's position
    within the whole volume (the authors' choice, meaningful only when crops cover most of the volume)."""
    small_volumes: str = "error"
    """A volume smaller than the crop along an axis: error (fail before training), skip it, or pad it."""
    batch_size: int = 10
    """Items per worker per forward pass (authors: 10 on one GPU)."""
    seed: int = 0
    """Item i of the stream is a pure function of (seed, i): which caption, where the crop, which augmentation."""
    reader_actors: list[int] = field(default_factory=lambda: [1, 2])
    """Ray Data crop-reader actor pool (min, max)."""
    reader_cpus: float = 0.5
    reader_batch_size: int = 8
    prefetch_batches: int = 2
    input: IntensityInputConfig = field(default_factory=IntensityInputConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if self.small_volumes not in SMALL_VOLUME_POLICIES:
            raise ValueError(f"data.small_volumes must be one of {SMALL_VOLUME_POLICIES}, got {self.small_volumes!r}")
        if self.slice_position not in SLICE_POSITIONS:
            raise ValueError(f"data.slice_position must be one of {SLICE_POSITIONS}, got {self.slice_position!r}")
        if not self.quality:
            raise ValueError("data.quality must keep at least one caption quality flag")
        if self.batch_size < 1 or self.reader_batch_size < 1 or self.prefetch_batches < 0:
            raise ValueError("data.batch_size and reader_batch_size must be >= 1, prefetch_batches >= 0")
        if len(self.reader_actors) != 2 or not 1 <= self.reader_actors[0] <= self.reader_actors[1]:
            raise ValueError(f"data.reader_actors must be [min, max] with 1 <= min <= max, got {self.reader_actors}")
        if self.reader_cpus <= 0:
            raise ValueError(f"data.reader_cpus must be > 0, got {self.reader_cpus}")


@dataclass(slots=True)
class PretrainConfig:
    """python -m jobs.pretrain --config configs/pretrain.yaml experiment=<name> store=<URL>"""

    experiment: str = MISSING
    """Run name: checkpoints and logs go to runs/<experiment>/; resubmitting the same name resumes."""
    store: str = "storage/local"
    store_options: dict[str, str] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scaling: TrainScalingConfig = field(default_factory=TrainScalingConfig)
    checkpoint: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    max_steps: int = 1000
    """Optimiser steps; each consumes batch_size * grad_accum items per worker."""
    grad_accum: int = 1
    """Forward/backward passes per optimiser step (the plan is still over one pass's batch)."""
    bf16: bool = True
    """bfloat16 autocast on CUDA (the OT cost and plan stay float32); ignored on CPU."""
    report_every: int = 10
    """Report metrics to Ray Train (and Tune) every N steps and at every checkpoint. Each report blocks until
    the Train controller polls the worker (every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s by default), so
    reporting every step caps training at 0.5 steps/s. Every step's metrics go to the run log regardless."""
    export_name: str | None = None
    """Export the encoder to models/<export_name>/ at the end (None: the experiment name)."""
    export_psat: bool = True
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not self.experiment or "/" in self.experiment or self.experiment.startswith("."):
            raise ValueError(f"experiment must be a plain name (no '/'), got {self.experiment!r}")
        if self.max_steps < 1 or self.grad_accum < 1 or self.report_every < 1:
            raise ValueError(
                f"max_steps, grad_accum and report_every must be >= 1, got {self.max_steps}, {self.grad_accum}, "
                f"{self.report_every}"
            )
        if self.model.psat.out_dim < 1:
            raise ValueError("model.psat.out_dim must be >= 1")

    @property
    def crop_size(self) -> list[int]:
        """Crop size (z, y, x) in voxels: the backbone's input size."""
        return list(self.model.backbone.img_size)
