"""Downstream networks on the 3D encoder: segmentation (encoder + a fresh decoder) and classification
(encoder + mean-pooled tokens + linear layer).

Shape legend: B batch, C input channels, D/H/W voxels, N tokens, T token width, K classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from med3dinsight.config.model import BackboneConfig
from med3dinsight.models.backbones import build_backbone

HEAD_KINDS = {"segmentation": "unet_decoder", "classification": "mean_pool_linear"}


def segmentation_decoder(cfg: BackboneConfig, num_classes: int) -> nn.Module:
    """The backbone's decoder with its 1x1 output convolution replaced to produce `num_classes` logits."""
    decoder = build_backbone(cfg).decoder
    out = decoder.out
    conv = out if isinstance(out, nn.Conv3d) else out.conv.conv  # MONAI UnetOutBlock wraps one Conv3d
    decoder.out = nn.Conv3d(conv.in_channels, num_classes, kernel_size=1)
    return decoder


class SegmentationNet(nn.Module):
    """Encoder features -> decoder -> per-voxel class logits (B, K, D, H, W).

    Args:
        encoder: a backbone encoder (`features(x) -> (tokens, feats)`).
        decoder: from `segmentation_decoder` for the same backbone config.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = decoder

    def forward(self, x_BCDHW: Tensor) -> Tensor:
        _, feats = self.encoder.features(x_BCDHW)
        return self.head(feats).float()


class PoolingHead(nn.Module):
    """LayerNorm of the mean token, then a linear layer: (B, N, T) -> (B, K)."""

    def __init__(self, token_dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(token_dim)
        self.fc = nn.Linear(token_dim, num_classes)

    def forward(self, tokens_BNT: Tensor) -> Tensor:
        return self.fc(self.norm(tokens_BNT.float().mean(1)))


class ClassificationNet(nn.Module):
    """Encoder tokens -> `PoolingHead` -> class logits (B, K)."""

    def __init__(self, encoder: nn.Module, token_dim: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = PoolingHead(token_dim, num_classes)

    def forward(self, x_BCDHW: Tensor) -> Tensor:
        return self.head(self.encoder(x_BCDHW))


def build_task_net(task: str, cfg: BackboneConfig, num_classes: int, encoder: nn.Module | None = None) -> nn.Module:
    """SegmentationNet or ClassificationNet around `encoder` (a fresh one from `cfg` when None)."""
    encoder = encoder if encoder is not None else build_backbone(cfg).encoder
    if task == "segmentation":
        return SegmentationNet(encoder, segmentation_decoder(cfg, num_classes))
    if task == "classification":
        return ClassificationNet(encoder, cfg.token_dim, num_classes)
    raise ValueError(f"task must be one of {tuple(HEAD_KINDS)}, got {task!r}")


@torch.no_grad()
def predict_probabilities(net: nn.Module, x_BCDHW: Tensor) -> Tensor:
    """Softmax over classes of `net(x)` (channel dim 1)."""
    return net(x_BCDHW).softmax(1)
