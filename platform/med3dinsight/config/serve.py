"""Schema of the serve stage config (configs/serve.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from med3dinsight.config.common import RayConfig

CROP_MODES = ("center", "sliding_window")
PLANES = ("axial", "coronal", "sagittal")


@dataclass(slots=True)
class HTTPConfig:
    """Where Serve's HTTP proxy listens."""

    host: str = "127.0.0.1"
    """127.0.0.1 locally; 0.0.0.0 on a cluster whose head is reached through a load balancer."""
    port: int = 8000
    route_prefix: str = "/"

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValueError(f"http.port must be in 1..65535, got {self.port}")
        if not self.route_prefix.startswith("/"):
            raise ValueError(f"http.route_prefix must start with '/', got {self.route_prefix!r}")


@dataclass(slots=True)
class ReplicaConfig:
    """How many replicas, and what each one reserves (must fit a node type of ray_cluster.yaml)."""

    num_replicas: int = 1
    """Fixed replica count (used when autoscaling is off)."""
    autoscaling: bool = False
    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 8.0
    """Autoscaling target of in-flight requests per replica."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    accelerator_type: str | None = None
    """e.g. L40S (the gpu_caption node type) or H200 (gpu_train); None: any node with the resources."""
    torch_threads: int | None = None
    """torch intra-op threads per replica (None: max(1, int(num_cpus)))."""

    def __post_init__(self) -> None:
        if self.num_replicas < 1:
            raise ValueError(f"replicas.num_replicas must be >= 1, got {self.num_replicas}")
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise ValueError(
                f"replicas need 0 <= min_replicas <= max_replicas, max >= 1; got {self.min_replicas}, "
                f"{self.max_replicas}"
            )
        if self.target_ongoing_requests <= 0:
            raise ValueError(f"replicas.target_ongoing_requests must be > 0, got {self.target_ongoing_requests}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(f"replicas.num_cpus/num_gpus must be >= 0, got {self.num_cpus}, {self.num_gpus}")
        if self.accelerator_type is not None and self.num_gpus == 0:
            raise ValueError(f"replicas.accelerator_type={self.accelerator_type!r} needs replicas.num_gpus > 0")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ValueError(f"replicas.torch_threads must be >= 1, got {self.torch_threads}")


@dataclass(slots=True)
class BatchingConfig:
    """Cross-caller batching of encoder calls (`@serve.batch`)."""

    enabled: bool = True
    """False runs one encoder call per request (the benchmark's baseline)."""
    max_batch_size: int = 8
    """Requests per batch; a request with several sliding windows counts once."""
    batch_wait_timeout_s: float = 0.005
    run_alone_at_once: bool = True
    """A request that is the only embed request in its replica skips the batch queue (no batch wait at low
    load); under concurrency requests are batched."""
    max_ongoing_requests: int = 32
    """Per replica; Serve requires >= max_batch_size."""

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"batching.max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.batch_wait_timeout_s < 0:
            raise ValueError(f"batching.batch_wait_timeout_s must be >= 0, got {self.batch_wait_timeout_s}")
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"batching.max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                f"({self.max_batch_size})"
            )


@dataclass(slots=True)
class LimitsConfig:
    """What one request may cost."""

    max_upload_mb: float = 512.0
    """Larger uploads get 413 (checked on Content-Length, then while streaming)."""
    request_timeout_s: float = 120.0
    """Requests running longer get 504 (a client may ask for less with `?timeout_s=`)."""
    memory_budget_mb: float = 4096.0
    """Refuse (422 OVER_MEMORY_BUDGET) a volume whose float32 voxels would exceed this, from its header."""
    max_zip_files: int = 4096
    """Most files in an uploaded DICOM .zip."""

    def __post_init__(self) -> None:
        for key in ("max_upload_mb", "request_timeout_s", "memory_budget_mb"):
            if getattr(self, key) <= 0:
                raise ValueError(f"limits.{key} must be > 0, got {getattr(self, key)}")
        if self.max_zip_files < 1:
            raise ValueError(f"limits.max_zip_files must be >= 1, got {self.max_zip_files}")


@dataclass(slots=True)
class AuthConfig:
    """Bearer-token auth of every /v1 route (not /healthz). Off when neither is set."""

    token: str | None = None
    token_env: str | None = None
    """Name of an environment variable holding the token on the replicas (preferred over `token`)."""


@dataclass(slots=True)
class CropConfig:
    """How a preprocessed volume becomes encoder inputs of the export's crop size."""

    mode: str = "sliding_window"
    """center: one crop at the volume centre (padded with background when smaller); sliding_window: tiles
    covering the volume, whose embeddings are averaged (segmentation logits are stitched)."""
    overlap: float = 0.25
    """Fraction of the crop shared by neighbouring windows."""
    max_windows: int = 8
    """Cap per request: larger volumes get fewer, evenly spread windows (bounded compute and memory)."""

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise ValueError(f"crop.mode must be one of {CROP_MODES}, got {self.mode!r}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"crop.overlap must be in [0, 1), got {self.overlap}")
        if self.max_windows < 1:
            raise ValueError(f"crop.max_windows must be >= 1, got {self.max_windows}")


@dataclass(slots=True)
class HealthConfig:
    """Serve health checks: a replica that fails them is replaced."""

    period_s: float = 10.0
    timeout_s: float = 30.0
    max_consecutive_internal_errors: int = 3
    """This many 500s in a row (not 4xx: those are the client's) mark the replica unhealthy."""

    def __post_init__(self) -> None:
        if self.period_s <= 0 or self.timeout_s <= 0:
            raise ValueError(f"health.period_s/timeout_s must be > 0, got {self.period_s}, {self.timeout_s}")
        if self.max_consecutive_internal_errors < 1:
            raise ValueError(
                f"health.max_consecutive_internal_errors must be >= 1, got {self.max_consecutive_internal_errors}"
            )


@dataclass(slots=True)
class ServeConfig:
    """python -m jobs.serve --config configs/serve.yaml store=<URL> model=<name|path> http.port=<int>"""

    model: str = MISSING
    """A name under the store's models/ or a directory written by save_encoder."""
    store: str = "storage/local"
    """Store root (volume_id requests, and model names); local path or fsspec URL."""
    store_options: dict[str, str] = field(default_factory=dict)
    app_name: str = "med3d"
    http: HTTPConfig = field(default_factory=HTTPConfig)
    replicas: ReplicaConfig = field(default_factory=ReplicaConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    default_plane: str = "axial"
    """PSAT exports embed one slice: the plane used when a request names none."""
    default_slice_position: float = 0.5
    """Relative slice position in [0, 1] used when a request names none."""
    device: str = "auto"
    """auto (cuda when the replica has a GPU), cpu or cuda."""
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if self.default_plane not in PLANES:
            raise ValueError(f"default_plane must be one of {PLANES}, got {self.default_plane!r}")
        if not 0.0 <= self.default_slice_position <= 1.0:
            raise ValueError(f"default_slice_position must be in [0, 1], got {self.default_slice_position}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
