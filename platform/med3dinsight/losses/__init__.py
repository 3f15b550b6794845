"""Training losses: entropic partial OT alignment of 3D to 2D embeddings, plus reconstruction."""

from med3dinsight.losses.alignment import (
    AlignmentLoss,
    WeightedCost,
    clip_loss,
    gather_batch,
    ot_alignment_loss,
)
from med3dinsight.losses.partial_ot import partial_ot_plan

__all__ = [
    "AlignmentLoss",
    "WeightedCost",
    "clip_loss",
    "gather_batch",
    "ot_alignment_loss",
    "partial_ot_plan",
]
