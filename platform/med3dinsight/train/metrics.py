"""Validation metrics: per-class Dice (MONAI), accuracy and one-vs-rest AUC, summed across workers.

Shape legend: K classes, V volumes, D/H/W voxels, B items.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def dice_per_class(pred_DHW: Tensor, label_DHW: Tensor, num_classes: int) -> Tensor:
    """Dice of classes 1..K-1 for one volume (K-1,), by MONAI's DiceMetric; NaN where a class is absent
    from both the label and the prediction."""
    from monai.metrics import DiceMetric

    pred = torch.nn.functional.one_hot(pred_DHW.long(), num_classes).permute(3, 0, 1, 2)[None].float()
    label = torch.nn.functional.one_hot(label_DHW.long(), num_classes).permute(3, 0, 1, 2)[None].float()
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    return metric(pred, label)[0].float().cpu()


def roc_auc(scores_B: np.ndarray, positives_B: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied ranks averaged); NaN without both classes."""
    positives_B = positives_B.astype(bool)
    n_pos, n_neg = int(positives_B.sum()), int((~positives_B).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores_B, kind="mergesort")
    ranks = np.empty(len(scores_B), dtype=np.float64)
    sorted_scores = scores_B[order]
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positives_B].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def macro_auc(probs_BK: np.ndarray, targets_B: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes present (binary: the AUC of class 1)."""
    k = probs_BK.shape[1]
    if k == 2:
        return roc_auc(probs_BK[:, 1], targets_B == 1)
    values = [roc_auc(probs_BK[:, c], targets_B == c) for c in range(k)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def all_gather_rows(rows: np.ndarray) -> np.ndarray:
    """Concatenate (n_i, F) float arrays from every data-parallel worker (identity without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered: list[np.ndarray | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, rows)
    return np.concatenate([g for g in gathered if g is not None and len(g)], axis=0) if any(
        g is not None and len(g) for g in gathered) else rows  # fmt: skip


def summarize_dice(dice_VK: np.ndarray, class_names: list[str]) -> dict[str, float]:
    """val_dice_<name> per foreground class (mean over volumes, NaNs ignored) and val_mean_dice."""
    out: dict[str, float] = {}
    for c in range(dice_VK.shape[1]):
        column = dice_VK[:, c]
        column = column[~np.isnan(column)]
        out[f"val_dice_{class_names[c + 1]}"] = float(column.mean()) if column.size else float("nan")
    present = [v for v in out.values() if not np.isnan(v)]
    out["val_mean_dice"] = float(np.mean(present)) if present else 0.0
    return out
