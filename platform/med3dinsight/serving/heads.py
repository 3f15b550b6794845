"""Fine-tuned task heads exported next to an encoder: format, save, load.

An export directory may hold, beside encoder.safetensors/encoder.json:

    head.safetensors   head weights (no pickles)
    head.json          {"format": "med3dinsight-head/1", "task": "segmentation" | "classification",
                        "arch": "token_linear", "num_classes": K, "class_names": [...], "token_dim": T,
                        "source_run": ...}

`token_linear` is a linear map of the bottleneck tokens: classification on their mean, segmentation per
token (a 1x1x1 convolution over the token grid) upsampled trilinearly to the crop. The fine-tune stage
writes richer heads by adding an `arch` to HEAD_ARCHS.

Shape legend: B batch, N tokens, T token width, K classes, D/H/W voxels of the crop.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

HEAD_FORMAT = "med3dinsight-head/1"
HEAD_WEIGHTS = "head.safetensors"
HEAD_RECORD = "head.json"
TASKS = ("segmentation", "classification")


class TokenLinearHead(nn.Module):
    """A linear head on bottleneck tokens (see the module docstring)."""

    def __init__(self, task: str, token_dim: int, num_classes: int) -> None:
        super().__init__()
        self.task = task
        self.linear = nn.Linear(token_dim, num_classes)

    def forward(self, tokens_BNT: Tensor, crop_zyx: tuple[int, int, int]) -> Tensor:
        """Logits: (B, K) for classification, (B, K, D, H, W) for segmentation."""
        if self.task == "classification":
            return self.linear(tokens_BNT.mean(1))
        grid = token_grid(tokens_BNT.shape[1], crop_zyx)
        logits_BNK = self.linear(tokens_BNT)
        logits_BKdhw = logits_BNK.transpose(1, 2).reshape(tokens_BNT.shape[0], -1, *grid)
        return F.interpolate(logits_BKdhw, size=tuple(crop_zyx), mode="trilinear", align_corners=False)


HEAD_ARCHS = {"token_linear": TokenLinearHead}


def token_grid(num_tokens: int, crop_zyx: tuple[int, int, int]) -> tuple[int, int, int]:
    """The (d, h, w) grid of `num_tokens` bottleneck tokens of a crop (every backbone downsamples isotropically)."""
    stride = round((crop_zyx[0] * crop_zyx[1] * crop_zyx[2] / num_tokens) ** (1 / 3))
    grid = tuple(max(1, n // stride) for n in crop_zyx)
    if grid[0] * grid[1] * grid[2] != num_tokens:
        raise ValueError(f"{num_tokens} tokens do not tile the crop {list(crop_zyx)} isotropically")
    return grid  # type: ignore[return-value]


def save_head(
    head: TokenLinearHead, out_dir: str | Path, class_names: list[str] | None = None, source_run: str | None = None
) -> Path:
    """Write head.safetensors then head.json (each replaced atomically) into an encoder export directory."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    num_classes = head.linear.out_features
    names = class_names or [str(k) for k in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    record = {
        "format": HEAD_FORMAT, "task": head.task, "arch": "token_linear", "num_classes": num_classes,
        "class_names": names, "token_dim": head.linear.in_features, "source_run": source_run,
    }  # fmt: skip
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    save_file(tensors, str(out / f".{HEAD_WEIGHTS}.tmp"), metadata={"format": HEAD_FORMAT})
    os.replace(out / f".{HEAD_WEIGHTS}.tmp", out / HEAD_WEIGHTS)
    (out / f".{HEAD_RECORD}.tmp").write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(out / f".{HEAD_RECORD}.tmp", out / HEAD_RECORD)
    return out


def load_head(export_dir: str | Path, token_dim: int) -> tuple[nn.Module, dict[str, Any]] | None:
    """The head of an export directory and its record, or None when it has none.

    Raises:
        ValueError: on an unknown format, task or arch, or weights that do not fit the encoder.
    """
    d = Path(export_dir)
    if not (d / HEAD_RECORD).is_file():
        return None
    record = json.loads((d / HEAD_RECORD).read_text())
    if record.get("format") != HEAD_FORMAT:
        raise ValueError(f"{d / HEAD_RECORD}: unknown format {record.get('format')!r}, expected {HEAD_FORMAT!r}")
    if record.get("task") not in TASKS or record.get("arch") not in HEAD_ARCHS:
        raise ValueError(f"{d / HEAD_RECORD}: task must be one of {TASKS} and arch one of {list(HEAD_ARCHS)}")
    if int(record["token_dim"]) != token_dim:
        raise ValueError(f"{d / HEAD_RECORD}: head expects {record['token_dim']}-wide tokens, encoder has {token_dim}")
    head = HEAD_ARCHS[record["arch"]](record["task"], token_dim, int(record["num_classes"]))
    try:
        head.load_state_dict(load_file(str(d / HEAD_WEIGHTS)))
    except (RuntimeError, OSError) as e:
        raise ValueError(f"{d / HEAD_WEIGHTS} does not match {HEAD_RECORD}: {e}") from None
    return head.eval(), record


@torch.no_grad()
def stitch_logits(
    logits_WKDHW: Tensor, starts_zyx: list[tuple[int, int, int]], shape_zyx: tuple[int, int, int]
) -> Tensor:
    """Average overlapping window logits into the volume (K, Z, Y, X); voxels no window covers get class 0."""
    num_classes, crop = logits_WKDHW.shape[1], logits_WKDHW.shape[2:]
    total = torch.zeros((num_classes, *shape_zyx))
    count = torch.zeros(shape_zyx)
    for logits, start in zip(logits_WKDHW, starts_zyx, strict=True):
        src, dst = [], []
        for s, c, n in zip(start, crop, shape_zyx, strict=True):
            low, high = max(s, 0), min(s + c, n)
            src.append(slice(low - s, high - s))
            dst.append(slice(low, high))
        total[(slice(None), *dst)] += logits[(slice(None), *src)].float()
        count[tuple(dst)] += 1
    uncovered = count == 0
    total = total / count.clamp(min=1)
    total[0][uncovered] = 1.0  # background wins where nothing was predicted
    return total
