"""Models: 3D encoder-decoder backbones, the plane-slice-aware transformer (PSAT), and their export."""

from med3dinsight.models.backbones import Backbone, build_backbone
from med3dinsight.models.med3dinsight import Med3DInsight, build_model
from med3dinsight.models.psat import PLANES, PSAT, slice_position

__all__ = ["PLANES", "PSAT", "Backbone", "Med3DInsight", "build_backbone", "build_model", "slice_position"]
