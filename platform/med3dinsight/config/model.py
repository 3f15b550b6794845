"""Schema of the model and alignment-loss configs (the `model:` and `loss:` sections of pretrain configs)."""

from __future__ import annotations

from dataclasses import dataclass, field

BACKBONES = ("unet_small", "swin_unetr", "unetr")
LOSS_KINDS = ("partial_ot", "pot", "entropic_ot", "clip")


@dataclass(slots=True)
class BackboneConfig:
    """A 3D encoder-decoder: bottleneck tokens for PSAT plus a reconstruction of the input."""

    name: str = "unet_small"
    """unet_small (plain conv U-Net, CPU-friendly), swin_unetr or unetr (MONAI implementations)."""
    in_channels: int = 1
    img_size: list[int] = field(default_factory=lambda: [128, 128, 128])
    """Crop size (D, H, W). UNETR's position embedding is built for it; every backbone checks divisibility."""
    feature_size: int = 48
    """unet_small: channels of the first level; swin_unetr: embed dim (multiple of 12); unetr: conv width."""
    num_levels: int = 4
    """unet_small: downsampling levels; the bottleneck has feature_size * 2**num_levels channels."""
    swin_depths: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    swin_num_heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    swin_window_size: int = 7
    vit_hidden_size: int = 768
    """unetr: transformer width (= token width)."""
    vit_mlp_dim: int = 3072
    vit_num_heads: int = 12
    gradient_checkpointing: bool = False
    """Recompute activations in backward (trades compute for memory; for the large backbones)."""
    bf16_autocast: bool = False
    """Run the backbone under bfloat16 autocast; tokens and reconstruction are returned in float32."""

    def __post_init__(self) -> None:
        if self.name not in BACKBONES:
            raise ValueError(f"model.backbone.name must be one of {BACKBONES}, got {self.name!r}")
        if self.in_channels < 1:
            raise ValueError(f"model.backbone.in_channels must be >= 1, got {self.in_channels}")
        if len(self.img_size) != 3 or any(s < 1 for s in self.img_size):
            raise ValueError(
                f"model.backbone.img_size must be 3 positive ints (D, H, W), got {self.img_size}"
            )
        if self.feature_size < 1:
            raise ValueError(f"model.backbone.feature_size must be >= 1, got {self.feature_size}")
        if self.num_levels < 1:
            raise ValueError(f"model.backbone.num_levels must be >= 1, got {self.num_levels}")
        stride = {"unet_small": 2**self.num_levels, "swin_unetr": 32, "unetr": 16}[self.name]
        if any(s % stride for s in self.img_size):
            raise ValueError(
                f"model.backbone.img_size must be divisible by {stride} for {self.name}, got {self.img_size}"
            )
        if self.name == "swin_unetr":
            if self.feature_size % 12:
                raise ValueError(
                    f"model.backbone.feature_size must be a multiple of 12, got {self.feature_size}"
                )
            if len(self.swin_depths) != 4 or len(self.swin_num_heads) != 4:
                raise ValueError("model.backbone.swin_depths and swin_num_heads need 4 entries (per stage)")
            for i, heads in enumerate(self.swin_num_heads):
                if heads < 1 or (self.feature_size * 2**i) % heads:
                    raise ValueError(
                        f"model.backbone.swin_num_heads[{i}]={heads} must divide the stage width "
                        f"{self.feature_size * 2**i}"
                    )
        if self.name == "unetr" and self.vit_hidden_size % self.vit_num_heads:
            raise ValueError(
                f"model.backbone.vit_hidden_size ({self.vit_hidden_size}) must be divisible by "
                f"vit_num_heads ({self.vit_num_heads})"
            )

    @property
    def token_dim(self) -> int:
        """Channels of the bottleneck tokens."""
        if self.name == "unet_small":
            return self.feature_size * 2**self.num_levels
        if self.name == "swin_unetr":
            return self.feature_size * 16
        return self.vit_hidden_size


@dataclass(slots=True)
class PSATConfig:
    """Plane-slice-aware transformer: learnable queries decoding the bottleneck tokens."""

    num_queries: int = 300
    dim: int = 768
    """Query and token width inside PSAT (bottleneck tokens are projected to it when they differ)."""
    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 3072
    """FFN hidden width. The authors' code passed the head count here (an 8-wide FFN); 4 * dim is the
    standard transformer choice and our default."""
    dropout: float = 0.0
    num_slice_bins: int = 128
    """Slots of the slice-position table. A slice at relative position p in [0, 1] uses slot
    floor(p * num_slice_bins); for a 256-slice axis and 128 slots this is the authors' `slice // 2`."""
    out_dim: int = 512
    """Width of the 2D embeddings the 3D embedding is aligned to (BiomedCLIP: 512)."""

    def __post_init__(self) -> None:
        for key in ("num_queries", "dim", "num_layers", "num_heads", "ffn_dim", "num_slice_bins", "out_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.psat.{key} must be >= 1, got {getattr(self, key)}")
        if self.dim % self.num_heads:
            raise ValueError(f"model.psat.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.psat.dropout must be in [0, 1), got {self.dropout}")


@dataclass(slots=True)
class ModelConfig:
    """Backbone + PSAT."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    psat: PSATConfig = field(default_factory=PSATConfig)


@dataclass(slots=True)
class LossConfig:
    """Alignment of the 3D embedding to the 2D image and text embeddings, plus reconstruction."""

    kind: str = "partial_ot"
    """partial_ot (our solver), pot (POT's entropic_partial_wasserstein, as the authors), entropic_ot
    (our solver with mass 1: full entropic OT) or clip (symmetric InfoNCE)."""
    mass: float = 0.95
    """Transported mass m of partial OT, in (0, 1] (marginals are uniform, each summing to 1)."""
    eps: float = 0.03
    """Entropic regularisation (the cost is scaled to max 1)."""
    max_iter: int = 1000
    tol: float = 1e-5
    """Stop the solver when the L1 marginal violation is below tol * mass. float32 log-domain potentials of
    magnitude ~cost/eps = 30 resolve plans to a few 1e-6 only, and near-permutation plans creep below
    1e-5 at Sinkhorn's slow rate, so 1e-5 is the useful floor."""
    cost_squared: bool = True
    """Cost = sum_k w_k (x_k - y_k)^2 (squared weighted distance) if True, else its square root."""
    temperature: float = 0.07
    """clip: softmax temperature."""
    image_weight: float = 1.0
    text_weight: float = 1.0
    recon_weight: float = 1.0
    global_batch: bool = False
    """Compute the plan over the batch gathered from every data-parallel worker (all-gather with
    gradients); ignored when torch.distributed is not initialised."""

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss.kind must be one of {LOSS_KINDS}, got {self.kind!r}")
        if not 0.0 < self.mass <= 1.0:
            raise ValueError(f"loss.mass must be in (0, 1], got {self.mass}")
        if self.eps <= 0:
            raise ValueError(f"loss.eps must be > 0, got {self.eps}")
        if self.max_iter < 1:
            raise ValueError(f"loss.max_iter must be >= 1, got {self.max_iter}")
        if self.tol < 0:
            raise ValueError(f"loss.tol must be >= 0, got {self.tol}")
        if self.temperature <= 0:
            raise ValueError(f"loss.temperature must be > 0, got {self.temperature}")
        for key in ("image_weight", "text_weight", "recon_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"loss.{key} must be >= 0, got {getattr(self, key)}")
