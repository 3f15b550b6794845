"""Schema of the ingest stage config (configs/ingest.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from med3dinsight.config.common import RayConfig

MODALITIES = ("auto", "CT", "MR")
CODEC_LEVELS = {
    "pcodec": (0, 12, 8),
    "blosc-zstd": (0, 9, 5),
    "blosc-lz4": (0, 9, 5),
    "zstd": (1, 22, 3),
    "none": (0, 0, 0),
}
"""codec -> (lowest, highest, default) compression level."""
CODECS = tuple(CODEC_LEVELS)


@dataclass(slots=True)
class IntensityConfig:
    """Per-modality intensity policy."""

    ct_window: list[float] = field(default_factory=lambda: [-1024.0, 3071.0])
    """CT: clip to this HU window [low, high]; stored as int16 HU."""
    mr_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    """MR: clip to these percentiles of the nonzero voxels, then scale to [0, 1]; stored as float32."""

    def __post_init__(self) -> None:
        lo, hi = _pair("preprocess.intensity.ct_window", self.ct_window)
        if not lo < hi:
            raise ValueError(f"preprocess.intensity.ct_window must be [low, high], low < high; got {self.ct_window}")
        plo, phi = _pair("preprocess.intensity.mr_percentiles", self.mr_percentiles)
        if not 0.0 <= plo < phi <= 100.0:
            raise ValueError(
                f"preprocess.intensity.mr_percentiles must satisfy 0 <= low < high <= 100, got {self.mr_percentiles}"
            )


@dataclass(slots=True)
class PreprocessConfig:
    """What is done to every volume before it is stored (recorded with it)."""

    orientation: str = "LPS"
    """Canonical orientation code (DICOM/ITK convention, e.g. LPS, RAS); the voxel axes are permuted and
    flipped, never resampled, to reach it."""
    target_spacing: list[float] | None = None
    """Target spacing in mm, (x, y, z) order as ITK; None keeps the native spacing."""
    modality: str = "auto"
    """auto (DICOM Modality tag, else CT if the minimum is below -500, else MR), CT or MR."""
    intensity: IntensityConfig = field(default_factory=IntensityConfig)

    def __post_init__(self) -> None:
        code = self.orientation.upper()
        axes = {"L": "x", "R": "x", "P": "y", "A": "y", "S": "z", "I": "z"}
        if len(code) != 3 or any(c not in axes for c in code) or len({axes[c] for c in code}) != 3:
            raise ValueError(f"preprocess.orientation must be a 3-letter code like LPS, got {self.orientation!r}")
        self.orientation = code
        if self.target_spacing is not None:
            if len(self.target_spacing) != 3 or any(s <= 0 for s in self.target_spacing):
                raise ValueError(
                    f"preprocess.target_spacing must be 3 positive values in mm (x, y, z), got {self.target_spacing}"
                )
        if self.modality not in MODALITIES:
            raise ValueError(f"preprocess.modality must be one of {MODALITIES}, got {self.modality!r}")


@dataclass(slots=True)
class ZarrConfig:
    """How volumes are laid out in the store (defaults chosen by bench/ingest.py)."""

    chunk: list[int] = field(default_factory=lambda: [64, 64, 64])
    """Chunk shape (z, y, x): the unit of compression and of reading (clipped to each level's shape)."""
    shard: list[int] | None = None
    """Shard shape (z, y, x), a multiple of `chunk`: one stored object per shard holding many chunks
    (fewer files / S3 objects); null stores one object per chunk."""
    codec: str = "pcodec"
    """pcodec (images; 8-bit label maps fall back to blosc-zstd), blosc-zstd / blosc-lz4 (byte shuffle),
    zstd, or none (raw bytes)."""
    clevel: int | None = None
    """Compression level (CODEC_LEVELS gives each codec's range); null takes the codec's default."""
    levels: int = 3
    """Pyramid levels, each 2x downsampled in every axis (stops early once an axis would drop below 8)."""

    def __post_init__(self) -> None:
        if len(self.chunk) != 3 or any(c < 1 for c in self.chunk):
            raise ValueError(f"zarr.chunk must be 3 positive ints (z, y, x), got {self.chunk}")
        if self.shard is not None and (
            len(self.shard) != 3 or any(s < c or s % c for s, c in zip(self.shard, self.chunk, strict=False))
        ):
            raise ValueError(f"zarr.shard must be 3 ints, each a multiple of zarr.chunk {self.chunk}, got {self.shard}")
        if self.codec not in CODECS:
            raise ValueError(f"zarr.codec must be one of {CODECS}, got {self.codec!r}")
        low, high, _ = CODEC_LEVELS[self.codec]
        if self.clevel is not None and not low <= self.clevel <= high:
            raise ValueError(f"zarr.clevel must be in {low}..{high} for {self.codec}, got {self.clevel}")
        if self.levels < 2:
            raise ValueError(f"zarr.levels must be >= 2 (a multiscale pyramid), got {self.levels}")

    @property
    def level(self) -> int:
        """The compression level in effect (`clevel`, or the codec's default)."""
        return CODEC_LEVELS[self.codec][2] if self.clevel is None else self.clevel


@dataclass(slots=True)
class IngestConfig:
    """python -m jobs.ingest --config configs/ingest.yaml input=<path|glob|list.txt|URL> store=<URL>"""

    input: str = MISSING
    """A file, a folder (searched recursively), a glob, a .txt file listing paths, or an fsspec URL."""
    store: str = "storage/local"
    """Store root: a local path or an fsspec URL (s3://bucket/prefix)."""
    store_options: dict[str, str] = field(default_factory=dict)
    """fsspec storage options for a remote store or input (e.g. endpoint_url)."""
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    zarr: ZarrConfig = field(default_factory=ZarrConfig)
    memory_budget_mb: float = 4096.0
    """Refuse a volume whose float32 voxels (after resampling) would exceed this, from its header."""
    max_failure_ratio: float = 1.0
    """Exit non-zero when the rejected fraction exceeds this (and always when every input failed)."""
    num_cpus_per_task: float = 1.0
    """CPUs Ray reserves for each per-volume task."""
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be > 0, got {self.memory_budget_mb}")
        if not 0.0 <= self.max_failure_ratio <= 1.0:
            raise ValueError(f"max_failure_ratio must be in [0, 1], got {self.max_failure_ratio}")
        if self.num_cpus_per_task <= 0:
            raise ValueError(f"num_cpus_per_task must be > 0, got {self.num_cpus_per_task}")


def _pair(name: str, values: list[float]) -> tuple[float, float]:
    if len(values) != 2:
        raise ValueError(f"{name} must have 2 values, got {values}")
    return float(values[0]), float(values[1])
