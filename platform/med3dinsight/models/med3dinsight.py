"""The Med3DInsight pretraining model: a 3D encoder-decoder whose bottleneck PSAT decodes into a 3D
embedding aligned with 2D slice embeddings.

Shape legend: B batch, C input channels, D/H/W voxels, E 2D embedding width.
"""

from __future__ import annotations

from torch import Tensor, nn

from med3dinsight.config.model import ModelConfig
from med3dinsight.models.backbones import build_backbone
from med3dinsight.models.psat import PSAT


class Med3DInsight(nn.Module):
    """Backbone + PSAT, built from a `ModelConfig`.

    Attributes:
        backbone: the encoder-decoder (`backbone.encoder` alone is what fine-tuning and serving keep).
        psat: the plane-slice-aware transformer.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = build_backbone(cfg.backbone)
        self.psat = PSAT(cfg.psat, cfg.backbone.token_dim)

    @property
    def encoder(self) -> nn.Module:
        return self.backbone.encoder

    def forward(self, x_BCDHW: Tensor, plane_B: Tensor, slice_pos_B: Tensor) -> tuple[Tensor, Tensor]:
        """3D embedding of the given slice and the reconstruction.

        Args:
            x_BCDHW: volume crops.
            plane_B: plane ids (0 axial, 1 coronal, 2 sagittal), integer (B,).
            slice_pos_B: relative slice positions in [0, 1], float (B,).

        Returns:
            emb_BE (query 0 of PSAT, width cfg.psat.out_dim) and recon_BCDHW.
        """
        tokens_BNC, recon_BCDHW = self.backbone(x_BCDHW)
        return self.psat(tokens_BNC, plane_B, slice_pos_B)[:, 0], recon_BCDHW


def build_model(cfg: ModelConfig) -> Med3DInsight:
    """Build the pretraining model (backbone by `cfg.backbone.name`, PSAT sized by `cfg.psat`)."""
    return Med3DInsight(cfg)
