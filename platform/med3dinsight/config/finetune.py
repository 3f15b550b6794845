"""Schema of the fine-tuning configs (configs/finetune/seg.yaml, cls.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from med3dinsight.config.common import RayConfig
from med3dinsight.config.model import BackboneConfig
from med3dinsight.config.train import (
    AugmentConfig,
    CheckpointingConfig,
    IntensityInputConfig,
    OptimConfig,
    TrainScalingConfig,
)

TASKS = ("segmentation", "classification")


@dataclass(slots=True)
class FinetuneDataConfig:
    """Labelled volumes, their split and the training crops (crop size = backbone.img_size)."""

    labels_csv: str | None = None
    """classification: a CSV with columns `label` and `volume_id` or `source` (the ingested input path).
    segmentation: labels come from catalog/labels.parquet (train.labels.ingest_labels)."""
    class_names: list[str] = field(default_factory=list)
    """Names of classes 0..num_classes-1 (classification: the CSV's label values in this order; default:
    sorted unique labels)."""
    modalities: list[str] = field(default_factory=list)
    """Keep only labelled volumes of these modalities (e.g. [CT]: label ids mean different things across
    modalities); empty keeps all."""
    val_fraction: float = 0.2
    split_seed: int = 0
    labelled_fraction: float = 1.0
    """Train on this fraction of the training split (data-efficiency curves); validation is unchanged."""
    batch_size: int = 2
    """Crops per worker per step."""
    foreground_prob: float = 0.5
    """segmentation: probability that a crop is centred on a labelled voxel (else uniformly placed)."""
    input: IntensityInputConfig = field(default_factory=IntensityInputConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 < self.labelled_fraction <= 1:
            raise ValueError(f"data.labelled_fraction must be in (0, 1], got {self.labelled_fraction}")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.foreground_prob <= 1:
            raise ValueError(f"data.foreground_prob must be in [0, 1], got {self.foreground_prob}")


@dataclass(slots=True)
class FinetuneConfig:
    """python -m jobs.finetune --config configs/finetune/seg.yaml experiment=<name> encoder=<model name>"""

    experiment: str = MISSING
    """Run name: runs/<experiment>/ (resubmitting resumes); the export goes to models/<export_name>/."""
    task: str = "segmentation"
    store: str = "storage/local"
    store_options: dict[str, str] = field(default_factory=dict)
    encoder: str | None = None
    """Pretrained encoder: models/<encoder>/ in the store, or a local export folder. None: random init (the
    baseline). Its architecture must equal `backbone`."""
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    num_classes: int = 2
    """segmentation: label values 0..num_classes-1 (0 = background); classification: classes."""
    freeze_encoder: bool = False
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4))
    scaling: TrainScalingConfig = field(default_factory=TrainScalingConfig)
    checkpoint: CheckpointingConfig = field(default_factory=CheckpointingConfig)
    max_steps: int = 1000
    val_every: int = 100
    """Validate (and keep the best model by the validation metric) every N steps and at the last."""
    report_every: int = 10
    """Report metrics to Ray Train every N steps, and at every validation and checkpoint (each report blocks
    up to the controller's 2 s poll interval; every step's metrics go to the run log regardless)."""
    sw_overlap: float = 0.25
    """segmentation: sliding-window inference overlap over whole validation volumes."""
    sw_batch_size: int = 4
    bf16: bool = True
    """bfloat16 autocast on CUDA; ignored on CPU."""
    export_name: str | None = None
    """models/<export_name>/ gets the fine-tuned encoder and the head (None: the experiment name)."""
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not self.experiment or "/" in self.experiment or self.experiment.startswith("."):
            raise ValueError(f"experiment must be a plain name (no '/'), got {self.experiment!r}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.data.class_names and len(self.data.class_names) != self.num_classes:
            raise ValueError(
                f"data.class_names has {len(self.data.class_names)} names for num_classes={self.num_classes}"
            )
        if self.task == "classification" and not self.data.labels_csv:
            raise ValueError("data.labels_csv is required for task=classification")
        if self.max_steps < 1 or self.val_every < 1 or self.report_every < 1:
            raise ValueError(f"max_steps, val_every and report_every must be >= 1, got {self.max_steps}, "
                             f"{self.val_every}, {self.report_every}")  # fmt: skip
        if not 0 <= self.sw_overlap < 1 or self.sw_batch_size < 1:
            raise ValueError("sw_overlap must be in [0, 1) and sw_batch_size >= 1")

    @property
    def metric(self) -> str:
        """The validation metric the best checkpoint is chosen by (higher is better)."""
        return "val_mean_dice" if self.task == "segmentation" else "val_auc"
