"""One pretraining optimiser step: forward, Med3DInsight loss, backward over accumulated micro-batches.

Shape legend: B micro-batch per worker, C channels (1), D/H/W crop voxels, E 2D embedding width.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from med3dinsight.config.model import LossConfig, ModelConfig
from med3dinsight.losses import AlignmentLoss, WeightedCost, clip_loss, gather_batch, ot_alignment_loss, partial_ot_plan
from med3dinsight.models import Med3DInsight, build_model

BATCH_KEYS = ("image", "plane", "slice_pos", "image_emb", "text_emb")
"""A pretraining batch: image (B, 1, D, H, W) float32 in [0, 1], plane (B,) int64, slice_pos (B,) float32,
image_emb and text_emb (B, E) float32."""


class PretrainModule(nn.Module):
    """Model and loss in one module, so that DDP synchronises the loss's learnable cost weights too.

    When the text embeddings are narrower or wider than the image embeddings (E = model.psat.out_dim, the
    image width), the 3D embedding is mapped to the text width by a learnable linear layer before the text
    alignment (`text_proj`, trained with the loss, not exported). With equal widths (the authors' setup,
    BiomedCLIP 512/512) this is exactly `AlignmentLoss`.

    Args:
        model_cfg: backbone + PSAT config.
        loss_cfg: alignment loss config.
        text_dim: width T of the text embeddings (None: E).
    """

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, text_dim: int | None = None) -> None:
        super().__init__()
        out_dim = model_cfg.psat.out_dim
        self.model: Med3DInsight = build_model(model_cfg)
        self.loss = AlignmentLoss(loss_cfg, out_dim)
        self.text_proj: nn.Module | None = None
        if text_dim is not None and text_dim != out_dim:
            self.text_proj = nn.Linear(out_dim, text_dim)
            self.loss.text_cost = WeightedCost(text_dim, loss_cfg.cost_squared)

    def forward(self, batch: dict[str, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """Loss terms (`total`, `ot_image`, `ot_text`, `recon`) and the 3D embeddings (B, E)."""
        emb3d_BE, recon_BCDHW = self.model(batch["image"], batch["plane"], batch["slice_pos"])
        if self.text_proj is None:
            terms = self.loss(emb3d_BE, batch["image_emb"], batch["text_emb"], recon_BCDHW, batch["image"])
            return terms, emb3d_BE
        return self._two_width_terms(emb3d_BE, batch, recon_BCDHW), emb3d_BE

    def _two_width_terms(self, emb3d_BE: Tensor, batch: dict[str, Tensor], recon_BCDHW: Tensor) -> dict[str, Tensor]:
        """AlignmentLoss's terms with the text branch on `text_proj(emb3d)` (same OT settings, global batch)."""
        c = self.loss.cfg
        pairs = {"ot_image": (emb3d_BE, batch["image_emb"], self.loss.image_cost),
                 "ot_text": (self.text_proj(emb3d_BE), batch["text_emb"], self.loss.text_cost)}  # fmt: skip
        terms = {}
        for name, (x3d, x2d, cost) in pairs.items():
            rows = slice(0, x3d.shape[0])
            if c.global_batch:
                x3d, rows = gather_batch(x3d)
                x2d, _ = gather_batch(x2d)
            if c.kind == "clip":
                terms[name] = clip_loss(x3d, x2d, c.temperature, rows)
            else:
                terms[name] = ot_alignment_loss(cost(x2d, x3d), c, rows)
        terms["recon"] = F.mse_loss(recon_BCDHW.float(), batch["image"].float())
        terms["total"] = c.image_weight * terms["ot_image"] + c.text_weight * terms["ot_text"] + (
            c.recon_weight * terms["recon"])  # fmt: skip
        return terms


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return module.module if hasattr(module, "module") else module


@torch.no_grad()
def plan_diagonal_mass(loss: AlignmentLoss, emb3d_BE: Tensor, emb2d_BE: Tensor) -> float:
    """Fraction of the transported mass on the plan's diagonal (1: every item matched to its own slice).

    Computed over the local batch; 0 for the clip loss (no plan).
    """
    cfg = loss.cfg
    if cfg.kind == "clip" or emb3d_BE.shape[0] < 2:
        return 0.0
    cost_BB = loss.image_cost(emb2d_BE.float(), emb3d_BE.float())
    mass = 1.0 if cfg.kind == "entropic_ot" else cfg.mass
    plan_BB = partial_ot_plan(cost_BB, mass, cfg.eps, max_iter=cfg.max_iter, tol=cfg.tol)
    return float(plan_BB.diagonal().sum() / plan_BB.sum().clamp_min(1e-12))


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Tensor]:
    """Move (or convert) the batch arrays to tensors on `device` with the dtypes of BATCH_KEYS."""
    out = {}
    for key in BATCH_KEYS:
        value = torch.as_tensor(batch[key])
        if key == "plane":
            value = value.long()
        elif value.is_floating_point():
            value = value.float()
        out[key] = value.to(device, non_blocking=True)
    return out


def pretrain_step(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    micro_batches: Sequence[dict[str, Tensor]],
    grad_clip: float = 0.0,
    bf16: bool = False,
    diag_mass: bool = True,
) -> dict[str, float]:
    """Accumulate gradients over `micro_batches`, then one optimiser and scheduler step.

    DDP all-reduces gradients only on the last micro-batch (`no_sync` before). The loss of each micro-batch
    is divided by their number, so the step equals one on their union (except that each plan spans one
    micro-batch).

    Args:
        module: a `PretrainModule`, possibly DDP-wrapped, on the batches' device.
        optimizer: its optimiser; scheduler: its LR scheduler.
        micro_batches: batches already on the device (BATCH_KEYS).
        grad_clip: clip the gradient norm to this (0: off).
        bf16: bfloat16 autocast (CUDA only; the OT cost and plan run in float32 regardless).
        diag_mass: also compute the plan's diagonal mass (an extra no-grad OT solve).

    Returns:
        Mean loss terms over the micro-batches, `plan_diag_mass`, `lr` and `grad_norm`.
    """
    module.train()
    n = len(micro_batches)
    sums: dict[str, float] = {}
    device_type = micro_batches[0]["image"].device.type
    last_emb: tuple[Tensor, Tensor] | None = None
    for i, batch in enumerate(micro_batches):
        sync = i == n - 1 or not hasattr(module, "no_sync")
        with module.no_sync() if not sync else contextlib.nullcontext():  # type: ignore[operator]
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16 and device_type == "cuda"):
                terms, emb3d_BE = module(batch)
            (terms["total"] / n).backward()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + float(value.detach()) / n
        last_emb = (emb3d_BE.detach(), batch["image_emb"])
    params = [p for g in optimizer.param_groups for p in g["params"]]
    norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    sums["lr"] = float(optimizer.param_groups[0]["lr"])
    scheduler.step()
    sums["grad_norm"] = float(norm)
    if diag_mass and last_emb is not None:
        sums["plan_diag_mass"] = plan_diagonal_mass(unwrap(module).loss, *last_emb)
    return sums
