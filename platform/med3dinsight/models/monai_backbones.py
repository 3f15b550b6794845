"""MONAI's SwinUNETR and UNETR split into the encoder/decoder halves of `models.backbones.Backbone`.

MONAI builds the networks (weights and layer definitions are MONAI's); these wrappers only re-wire
their `forward` so the bottleneck tokens come out beside the reconstruction, and add gradient
checkpointing where MONAI has none (UNETR's ViT blocks).

Shape legend: B batch, C channels, D/H/W voxels, N bottleneck tokens.
"""

from __future__ import annotations

from typing import Any

from monai.networks.nets import UNETR, SwinUNETR
from torch import Tensor, nn

from med3dinsight.config.model import BackboneConfig
from med3dinsight.models.backbones import maybe_checkpoint, tokens_from_grid

_SWIN_ENCODER = ("swinViT", "encoder1", "encoder2", "encoder3", "encoder4", "encoder10")
_SWIN_DECODER = ("decoder5", "decoder4", "decoder3", "decoder2", "decoder1", "out")
_UNETR_ENCODER = ("vit", "encoder1", "encoder2", "encoder3", "encoder4")
_UNETR_DECODER = ("decoder5", "decoder4", "decoder3", "decoder2", "out")


def build(cfg: BackboneConfig, backbone_cls: type) -> Any:
    """Build `backbone_cls(cfg, encoder, decoder)` around MONAI's network named by `cfg.name`."""
    if cfg.name == "swin_unetr":
        net = SwinUNETR(
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            feature_size=cfg.feature_size,
            depths=tuple(cfg.swin_depths),
            num_heads=tuple(cfg.swin_num_heads),
            window_size=cfg.swin_window_size,
            use_checkpoint=cfg.gradient_checkpointing,
        )
        return backbone_cls(cfg, SwinEncoder(net), SwinDecoder(net))
    if cfg.name == "unetr":
        net = UNETR(
            in_channels=cfg.in_channels,
            out_channels=cfg.in_channels,
            img_size=tuple(cfg.img_size),
            feature_size=cfg.feature_size,
            hidden_size=cfg.vit_hidden_size,
            mlp_dim=cfg.vit_mlp_dim,
            num_heads=cfg.vit_num_heads,
        )
        return backbone_cls(cfg, UNETREncoder(net, cfg.gradient_checkpointing), UNETRDecoder(net))
    raise ValueError(f"not a MONAI backbone: {cfg.name!r}")


def _adopt(dst: nn.Module, src: nn.Module, names: tuple[str, ...]) -> None:
    for name in names:
        dst.add_module(name, getattr(src, name))


class SwinEncoder(nn.Module):
    """SwinUNETR's Swin transformer plus the conv blocks that turn its stages into decoder skips."""

    def __init__(self, net: SwinUNETR) -> None:
        super().__init__()
        _adopt(self, net, _SWIN_ENCODER)
        self.normalize = net.normalize
        self.stride = net.patch_size**5

    def _check_input_size(self, shape: tuple[int, ...]) -> None:
        if any(s % self.stride for s in shape):
            raise ValueError(f"swin_unetr input size must be divisible by {self.stride}, got {tuple(shape)}")

    def forward(self, x_BCDHW: Tensor) -> Tensor:
        """Tokens of the last Swin stage: (B, DHW / 32**3, 16 * feature_size)."""
        self._check_input_size(x_BCDHW.shape[2:])
        return tokens_from_grid(self.swinViT(x_BCDHW, self.normalize)[4])

    def features(self, x_BCDHW: Tensor) -> tuple[Tensor, list[Tensor]]:
        self._check_input_size(x_BCDHW.shape[2:])
        hidden = self.swinViT(x_BCDHW, self.normalize)
        feats = [
            self.encoder1(x_BCDHW),
            self.encoder2(hidden[0]),
            self.encoder3(hidden[1]),
            self.encoder4(hidden[2]),
            hidden[3],
            self.encoder10(hidden[4]),
        ]
        return tokens_from_grid(hidden[4]), feats


class SwinDecoder(nn.Module):
    def __init__(self, net: SwinUNETR) -> None:
        super().__init__()
        _adopt(self, net, _SWIN_DECODER)

    def forward(self, feats: list[Tensor]) -> Tensor:
        enc0, enc1, enc2, enc3, hidden3, dec4 = feats
        dec3 = self.decoder5(dec4, hidden3)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        dec0 = self.decoder2(dec1, enc1)
        return self.out(self.decoder1(dec0, enc0))


class UNETREncoder(nn.Module):
    """UNETR's ViT (16^3 patches, 12 blocks) and the conv blocks projecting blocks 3, 6, 9 to skips."""

    def __init__(self, net: UNETR, checkpointing: bool) -> None:
        super().__init__()
        _adopt(self, net, _UNETR_ENCODER)
        self.checkpointing = checkpointing
        self.feat_size = tuple(net.feat_size)
        self.hidden_size = net.hidden_size
        for blk in self.vit.blocks:  # MONAI allocates these even without cross-attention; DDP rejects
            if not getattr(blk, "with_cross_attention", False) and hasattr(blk, "norm_cross_attn"):
                blk.norm_cross_attn.requires_grad_(False)  # parameters that never get a gradient

    def _vit(self, x_BCDHW: Tensor) -> tuple[Tensor, list[Tensor]]:
        x_BNC = self.vit.patch_embedding(x_BCDHW)
        hidden = []
        for blk in self.vit.blocks:
            x_BNC = maybe_checkpoint(self.checkpointing, blk, x_BNC)
            hidden.append(x_BNC)
        return self.vit.norm(x_BNC), hidden

    def _grid(self, x_BNC: Tensor) -> Tensor:
        return x_BNC.transpose(1, 2).reshape(x_BNC.shape[0], self.hidden_size, *self.feat_size)

    def forward(self, x_BCDHW: Tensor) -> Tensor:
        """Final ViT tokens: (B, DHW / 16**3, vit_hidden_size)."""
        return self._vit(x_BCDHW)[0]

    def features(self, x_BCDHW: Tensor) -> tuple[Tensor, list[Tensor]]:
        tokens_BNC, hidden = self._vit(x_BCDHW)
        feats = [
            self.encoder1(x_BCDHW),
            self.encoder2(self._grid(hidden[3])),
            self.encoder3(self._grid(hidden[6])),
            self.encoder4(self._grid(hidden[9])),
            self._grid(tokens_BNC),
        ]
        return tokens_BNC, feats


class UNETRDecoder(nn.Module):
    def __init__(self, net: UNETR) -> None:
        super().__init__()
        _adopt(self, net, _UNETR_DECODER)

    def forward(self, feats: list[Tensor]) -> Tensor:
        enc1, enc2, enc3, enc4, dec4 = feats
        dec3 = self.decoder5(dec4, enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        return self.out(self.decoder2(dec1, enc1))
