"""3D encoder-decoder backbones behind one interface, built by config name.

Every backbone is `Backbone(encoder, decoder)`:
- `encoder(x_BCDHW) -> tokens_BNC` (the part fine-tuning and serving keep), and
  `encoder.features(x_BCDHW) -> (tokens_BNC, feats)` with whatever the decoder needs (skips);
- `decoder(feats) -> recon_BCDHW`, the reconstruction of the input.

Shape legend: B batch, C channels (input channels for x and recon, token width for tokens),
D/H/W voxels, N bottleneck tokens (flattened bottleneck grid).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from med3dinsight.config.model import BackboneConfig


class Backbone(nn.Module):
    """Encoder-decoder pair with the bf16-autocast switch applied around both.

    Args:
        cfg: the backbone config it was built from (kept for export).
        encoder: module with `forward(x) -> tokens_BNC` and `features(x) -> (tokens_BNC, feats)`.
        decoder: module with `forward(feats) -> recon_BCDHW`.
    """

    def __init__(self, cfg: BackboneConfig, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.decoder = decoder
        if cfg.bf16_autocast:
            norms_in_float32(self)
            small_input_convs_in_float32(self)

    @property
    def token_dim(self) -> int:
        return self.cfg.token_dim

    def forward(self, x_BCDHW: Tensor) -> tuple[Tensor, Tensor]:
        """Bottleneck tokens and reconstruction.

        Args:
            x_BCDHW: volume batch, C = cfg.in_channels, spatial size divisible by the backbone stride.

        Returns:
            tokens_BNC (float32) and recon_BCDHW (float32, same shape as the input).
        """
        with torch.autocast(x_BCDHW.device.type, dtype=torch.bfloat16, enabled=self.cfg.bf16_autocast):
            tokens_BNC, feats = self.encoder.features(x_BCDHW)
            recon_BCDHW = self.decoder(feats)
        return tokens_BNC.float(), recon_BCDHW.float()


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build the backbone named by `cfg.name` (unet_small, swin_unetr, unetr) with sizes from `cfg`."""
    if cfg.name == "unet_small":
        return Backbone(cfg, SmallUNetEncoder(cfg), SmallUNetDecoder(cfg))
    from med3dinsight.models import monai_backbones  # MONAI is imported only when asked for

    return monai_backbones.build(cfg, Backbone)


class _Float32Norm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class Float32InstanceNorm3d(_Float32Norm, nn.InstanceNorm3d):
    """InstanceNorm3d that computes in float32 inside autocast."""


class Float32GroupNorm(_Float32Norm, nn.GroupNorm):
    """GroupNorm that computes in float32 inside autocast."""


class Float32LayerNorm(_Float32Norm, nn.LayerNorm):
    """LayerNorm that computes in float32 inside autocast."""


class Float32BatchNorm3d(_Float32Norm, nn.BatchNorm3d):
    """BatchNorm3d that computes in float32 inside autocast."""


_FLOAT32_NORMS = {
    nn.InstanceNorm3d: Float32InstanceNorm3d, nn.GroupNorm: Float32GroupNorm,
    nn.LayerNorm: Float32LayerNorm, nn.BatchNorm3d: Float32BatchNorm3d,
}  # fmt: skip


def norms_in_float32(module: nn.Module) -> None:
    """Make every normalisation layer under `module` compute in float32, even inside bf16 autocast.

    Autocast leaves these in bf16 on CPU, while CUDA AMP already runs layer/group norm in float32; the
    statistics over the few voxels of a deep bottleneck are the least precise. Their cost is negligible
    next to the convs. The class swap keeps parameters and state-dict keys, and pickles and deep-copies
    like the original.
    """
    for norm in module.modules():
        if type(norm) in _FLOAT32_NORMS:
            norm.__class__ = _FLOAT32_NORMS[type(norm)]


class Float32SmallInputConv3d(nn.Conv3d):
    """Conv3d that computes in float32 inside CPU autocast when its input is smaller than the kernel.

    oneDNN's bf16 CPU weight gradient for a padded Conv3d is garbage when the input is smaller than the
    kernel along depth (e.g. depth 2 under a 3x3x3 kernel, any height/width, seen with 16+ channels): it
    changes from call to call on the same inputs (uninitialised memory, by the look of it) and is often
    ~1e37, inf or nan. That is SwinUNETR's 2x2x2 bottleneck block (`encoder10`) at 64^3. Such inputs
    are tiny, so float32 costs nothing; every other conv keeps bf16.
    """

    def forward(self, x: Tensor) -> Tensor:
        small = any(s < k for s, k in zip(x.shape[-3:], self.kernel_size, strict=True))
        if small and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def small_input_convs_in_float32(module: nn.Module) -> None:
    """Swap every `nn.Conv3d` under `module` for `Float32SmallInputConv3d` (same parameters and keys)."""
    for conv in module.modules():
        if type(conv) is nn.Conv3d:
            conv.__class__ = Float32SmallInputConv3d


def maybe_checkpoint(enabled: bool, fn: Callable[..., Tensor], *args: Tensor) -> Tensor:
    """`fn(*args)`, recomputed in backward when `enabled` and gradients are needed."""
    if enabled and torch.is_grad_enabled():
        return checkpoint(fn, *args, use_reentrant=False)
    return fn(*args)


def tokens_from_grid(x_BCDHW: Tensor) -> Tensor:
    """Flatten a feature grid into tokens: (B, C, D, H, W) -> (B, D*H*W, C)."""
    return x_BCDHW.flatten(2).transpose(1, 2)


def _conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1, bias=False),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class SmallUNetEncoder(nn.Module):
    """Plain 3D U-Net encoder: a full-resolution block, then `num_levels` stride-2 blocks doubling width."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        f = cfg.feature_size
        self.checkpointing = cfg.gradient_checkpointing
        self.stem = _conv_block(cfg.in_channels, f)
        self.downs = nn.ModuleList(_conv_block(f * 2**i, f * 2 ** (i + 1), 2) for i in range(cfg.num_levels))

    def features(self, x_BCDHW: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Tokens of the deepest level, and every level's feature map (full resolution first)."""
        feats = [maybe_checkpoint(self.checkpointing, self.stem, x_BCDHW)]
        for down in self.downs:
            feats.append(maybe_checkpoint(self.checkpointing, down, feats[-1]))
        return tokens_from_grid(feats[-1]), feats

    def forward(self, x_BCDHW: Tensor) -> Tensor:
        """Bottleneck tokens (B, N, C) with N = DHW / 8**num_levels and C = feature_size * 2**num_levels."""
        return self.features(x_BCDHW)[0]


class SmallUNetDecoder(nn.Module):
    """Mirror of `SmallUNetEncoder`: transposed-conv upsampling, skip concatenation, a 1x1 output conv."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        f = cfg.feature_size
        self.checkpointing = cfg.gradient_checkpointing
        levels = range(cfg.num_levels, 0, -1)
        self.ups = nn.ModuleList(nn.ConvTranspose3d(f * 2**i, f * 2 ** (i - 1), 2, stride=2) for i in levels)
        self.blocks = nn.ModuleList(_conv_block(f * 2**i, f * 2 ** (i - 1)) for i in levels)
        self.out = nn.Conv3d(f, cfg.in_channels, 1)

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(feats[:-1]), strict=True):
            x = maybe_checkpoint(self.checkpointing, block, torch.cat([up(x), skip], dim=1))
        return self.out(x)
