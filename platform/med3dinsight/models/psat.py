"""PSAT, the plane-slice-aware transformer: learnable queries decode the 3D bottleneck tokens into an
embedding of one 2D slice of the volume (plane + slice position), in the width of the 2D encoder.

Slice positions are relative (index / number of slices along the plane's axis, in [0, 1]) and binned
into `num_slice_bins` slots, so one table serves every volume size. The authors indexed the table by
`slice // 2` with 128 slots, i.e. they assumed 256 slices; for a 256-slice axis floor(p * 128) with
p = slice / 256 is exactly `slice // 2`, and other sizes map proportionally instead of overflowing.

Shape legend: B batch, N bottleneck tokens, C token width, Q queries, D PSAT width, E 2D embedding width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from med3dinsight.config.model import PSATConfig

PLANES = ("axial", "coronal", "sagittal")
"""Plane ids used by `plane_B`: 0 axial, 1 coronal, 2 sagittal."""


def slice_position(slice_index: Tensor | int, num_slices: Tensor | int) -> Tensor:
    """Relative slice position in [0, 1): slice_index / num_slices (the value PSAT bins)."""
    index = torch.as_tensor(slice_index, dtype=torch.float32)
    return index / torch.as_tensor(num_slices, dtype=torch.float32)


class PSAT(nn.Module):
    """Plane-slice-aware transformer decoder.

    Args:
        cfg: sizes (queries, width, layers, heads, FFN width, slice bins, output width).
        token_dim: width C of the backbone's bottleneck tokens (projected to cfg.dim when different).
    """

    def __init__(self, cfg: PSATConfig, token_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_proj = nn.Linear(token_dim, cfg.dim) if token_dim != cfg.dim else nn.Identity()
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, cfg.dim) * 0.02)
        self.plane_slice = nn.Embedding(len(PLANES) * cfg.num_slice_bins, cfg.dim)
        nn.init.normal_(self.plane_slice.weight, std=0.02)
        layer = nn.TransformerDecoderLayer(
            cfg.dim, cfg.num_heads, cfg.ffn_dim, cfg.dropout, "gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, cfg.num_layers, norm=nn.LayerNorm(cfg.dim))
        self.proj = nn.Linear(cfg.dim, cfg.out_dim)

    def slot(self, plane_B: Tensor, slice_pos_B: Tensor) -> Tensor:
        """Row of the (plane, slice-bin) table for each item, long (B,).

        Raises:
            ValueError: on a plane outside 0..2 or a slice position outside [0, 1].
        """
        if plane_B.dtype.is_floating_point or bool(((plane_B < 0) | (plane_B >= len(PLANES))).any()):
            raise ValueError(f"plane must be integer ids in 0..2 {PLANES}, got {plane_B.tolist()}")
        if bool(((slice_pos_B < 0) | (slice_pos_B > 1)).any()):
            raise ValueError(f"slice positions must be relative, in [0, 1], got {slice_pos_B.tolist()}")
        bins = self.cfg.num_slice_bins
        bin_B = (slice_pos_B.float() * bins).long().clamp_(max=bins - 1)
        return plane_B.long() * bins + bin_B

    def forward(self, tokens_BNC: Tensor, plane_B: Tensor, slice_pos_B: Tensor) -> Tensor:
        """Decode every query.

        Args:
            tokens_BNC: bottleneck tokens of the 3D backbone.
            plane_B: plane ids (0 axial, 1 coronal, 2 sagittal), integer (B,).
            slice_pos_B: relative slice positions in [0, 1], float (B,) (see `slice_position`).

        Returns:
            Query outputs projected to the 2D embedding width, (B, Q, E); query 0 is the 3D embedding.
        """
        if plane_B.shape != (tokens_BNC.shape[0],) or slice_pos_B.shape != plane_B.shape:
            raise ValueError(
                f"plane and slice_pos must have shape ({tokens_BNC.shape[0]},), "
                f"got {tuple(plane_B.shape)} and {tuple(slice_pos_B.shape)}"
            )
        ps_B1D = self.plane_slice(self.slot(plane_B, slice_pos_B))[:, None, :]
        memory_BND = self.token_proj(tokens_BNC) + ps_B1D
        queries_BQD = self.queries[None].expand(tokens_BNC.shape[0], -1, -1) + ps_B1D
        return self.proj(self.decoder(queries_BQD, memory_BND))
