"""Alignment of 3D embeddings to 2D (image, text) embeddings by partial OT, plus reconstruction.

Authors' recipe (../shared/DESIGN.md section 4): within a batch, C[i, j] = learnable-diagonal weighted
distance between L2-normalised 2D embedding i and 3D embedding j, divided by its max; P = entropic
partial OT plan with uniform marginals 1/B, mass m, entropy eps; loss = -(1/B) sum_i log P[i, i].

Scale note, kept as the authors had it: P[i, i] <= 1/B, so the loss is bounded below by
log(B / m) (about 2.36 for B = 10, m = 0.95), not by 0, and its value shifts with the batch size;
the gradient does not depend on that offset. Compare runs at equal (global) batch size.

Shape legend: B local batch, G global batch (B times the data-parallel world size, or B), E embedding
width, C input channels, D/H/W voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from med3dinsight.config.model import LossConfig
from med3dinsight.losses.partial_ot import partial_ot_plan


class WeightedCost(nn.Module):
    """C[i, j] = sum_k w_k (y_ik - x_jk)^2 on L2-normalised x, y, scaled so max C = 1.

    w = exp(log_w) > 0 is the learnable diagonal of the authors' "Mahalanobis" matrix (they kept only
    its diagonal); initialised to 1. With `squared=False` the square root is taken (a distance).

    Args:
        dim: embedding width E.
        squared: squared weighted distance (True) or weighted distance (False).
    """

    def __init__(self, dim: int, squared: bool = True) -> None:
        super().__init__()
        self.log_w = nn.Parameter(torch.zeros(dim))
        self.squared = squared

    def forward(self, y_NE: Tensor, x_ME: Tensor) -> Tensor:
        """Cost between rows y (2D embeddings) and columns x (3D embeddings), (N, M), max 1."""
        if y_NE.dim() != 2 or x_ME.dim() != 2 or not y_NE.shape[1] == x_ME.shape[1] == self.log_w.shape[0]:
            raise ValueError(
                f"embeddings must be (N, {self.log_w.shape[0]}) and (M, {self.log_w.shape[0]}), "
                f"got {tuple(y_NE.shape)} and {tuple(x_ME.shape)}"
            )
        w_E = self.log_w.exp()
        dtype = torch.promote_types(torch.promote_types(y_NE.dtype, x_ME.dtype), w_E.dtype)
        # full precision even inside a bf16 autocast region: the cost is divided by eps = 0.03 next
        with torch.autocast(y_NE.device.type, enabled=False):
            y_NE, x_ME = F.normalize(y_NE.to(dtype), dim=1), F.normalize(x_ME.to(dtype), dim=1)
            # expanded form: (N, M, E) differences would not fit for large global batches
            cost_NM = (
                (y_NE.square() @ w_E)[:, None] + (x_ME.square() @ w_E)[None, :] - 2 * (y_NE * w_E) @ x_ME.T
            )
            cost_NM = cost_NM.clamp_min(0.0)
            if not self.squared:
                cost_NM = cost_NM.clamp_min(1e-12).sqrt()
        return cost_NM / cost_NM.max().clamp_min(1e-12)


def pot_plan(cost_NM: Tensor, mass: float, eps: float) -> Tensor:
    """POT's `entropic_partial_wasserstein` on torch tensors with uniform marginals, as the authors called it
    (default 1000 iterations, autograd through every iteration). For ablations and benchmarks."""
    import ot  # POT is heavy to import; only this ablation needs it

    a_N = torch.full((cost_NM.shape[0],), 1.0 / cost_NM.shape[0], dtype=cost_NM.dtype, device=cost_NM.device)
    b_M = torch.full((cost_NM.shape[1],), 1.0 / cost_NM.shape[1], dtype=cost_NM.dtype, device=cost_NM.device)
    return ot.partial.entropic_partial_wasserstein(a_N, b_M, cost_NM, reg=eps, m=mass)


def ot_alignment_loss(cost_GG: Tensor, cfg: LossConfig, rows: slice | None = None) -> Tensor:
    """-(1/|rows|) sum_{i in rows} log P[i, i] for the plan of `cfg.kind` (partial_ot, pot, entropic_ot).

    Args:
        cost_GG: square cost, rows = 2D embeddings, columns = 3D embeddings of the same items.
        cfg: loss config (kind, mass, eps, solver settings).
        rows: the diagonal entries this worker owns (all when None).
    """
    if cost_GG.dim() != 2 or cost_GG.shape[0] != cost_GG.shape[1]:
        raise ValueError(f"alignment cost must be square (G, G), got {tuple(cost_GG.shape)}")
    rows = slice(0, cost_GG.shape[0]) if rows is None else rows
    if cfg.kind == "pot":
        log_diag = pot_plan(cost_GG, cfg.mass, cfg.eps).diagonal()[rows].log()
    else:
        mass = 1.0 if cfg.kind == "entropic_ot" else cfg.mass
        log_plan = partial_ot_plan(cost_GG, mass, cfg.eps, max_iter=cfg.max_iter, tol=cfg.tol, log=True)
        log_diag = log_plan.diagonal()[rows]
    return -log_diag.mean()


def clip_loss(x_GE: Tensor, y_GE: Tensor, temperature: float, rows: slice | None = None) -> Tensor:
    """Symmetric InfoNCE on cosine similarities (CLIP), over the rows this worker owns."""
    rows = slice(0, x_GE.shape[0]) if rows is None else rows
    logits_GG = F.normalize(x_GE.float(), dim=1) @ F.normalize(y_GE.float(), dim=1).T / temperature
    target = torch.arange(x_GE.shape[0], device=x_GE.device)[rows]
    return 0.5 * (F.cross_entropy(logits_GG[rows], target) + F.cross_entropy(logits_GG.T[rows], target))


def gather_batch(x_BE: Tensor) -> tuple[Tensor, slice]:
    """All-gather embeddings across data-parallel workers with gradients.

    Returns:
        The global batch (G, E) and the slice of it that is this worker's (B rows). Without an
        initialised process group: `x_BE` itself and all rows. Every worker must have the same B.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x_BE, slice(0, x_BE.shape[0])
    from torch.distributed.nn.functional import all_gather

    parts = all_gather(x_BE.contiguous())  # backward sums every worker's gradient into its source
    b, rank = x_BE.shape[0], dist.get_rank()
    return torch.cat(parts, dim=0), slice(rank * b, (rank + 1) * b)


class AlignmentLoss(nn.Module):
    """Total loss = image_weight * OT(3D, image) + text_weight * OT(3D, text) + recon_weight * MSE.

    Holds one learnable cost weight vector per 2D modality. With `cfg.global_batch` and an initialised
    process group the plan spans the batch gathered from every worker; each worker's loss covers its
    own diagonal entries, so averaging gradients across workers (DDP) gives the global-batch gradient.

    Args:
        cfg: the loss config.
        dim: width E of the 3D and 2D embeddings.
    """

    def __init__(self, cfg: LossConfig, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_cost = WeightedCost(dim, cfg.cost_squared)
        self.text_cost = WeightedCost(dim, cfg.cost_squared)

    def _align(self, cost: WeightedCost, emb3d_GE: Tensor, emb2d_GE: Tensor, rows: slice) -> Tensor:
        if self.cfg.kind == "clip":
            return clip_loss(emb3d_GE, emb2d_GE, self.cfg.temperature, rows)
        return ot_alignment_loss(cost(emb2d_GE, emb3d_GE), self.cfg, rows)

    def forward(
        self, emb3d_BE: Tensor, image_BE: Tensor, text_BE: Tensor, recon_BCDHW: Tensor, x_BCDHW: Tensor
    ) -> dict[str, Tensor]:
        """Loss terms for one batch.

        Args:
            emb3d_BE: 3D embeddings (PSAT query 0).
            image_BE: frozen 2D image embeddings of the items' slices.
            text_BE: frozen 2D text embeddings of the items' captions.
            recon_BCDHW: reconstruction; x_BCDHW: the input it reconstructs.

        Returns:
            dict with `total` (to backpropagate) and the unweighted terms `ot_image`, `ot_text`, `recon`.

        Raises:
            ValueError: when the embedding batches or widths differ.
        """
        if not emb3d_BE.shape == image_BE.shape == text_BE.shape:
            raise ValueError(
                "3D, image and text embeddings must have the same shape (B, E), got "
                f"{tuple(emb3d_BE.shape)}, {tuple(image_BE.shape)}, {tuple(text_BE.shape)}"
            )
        rows = slice(0, emb3d_BE.shape[0])
        if self.cfg.global_batch:
            emb3d_BE, rows = gather_batch(emb3d_BE)
            image_BE, _ = gather_batch(image_BE)
            text_BE, _ = gather_batch(text_BE)
        terms = {
            "ot_image": self._align(self.image_cost, emb3d_BE, image_BE, rows),
            "ot_text": self._align(self.text_cost, emb3d_BE, text_BE, rows),
            "recon": F.mse_loss(recon_BCDHW.float(), x_BCDHW.float()),
        }
        c = self.cfg
        weighted = (
            (c.image_weight, terms["ot_image"]),
            (c.text_weight, terms["ot_text"]),
            (c.recon_weight, terms["recon"]),
        )
        terms["total"] = sum(w * t for w, t in weighted)
        return terms
