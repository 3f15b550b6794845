"""Export a fine-tuned task network: the encoder in `models.export`'s format plus the head beside it.

    models/<name>/encoder.safetensors + encoder.json   the fine-tuned encoder (save_encoder, no PSAT)
    models/<name>/head.safetensors                     head weights (`head.*`)
    models/<name>/head.json                            format, task, head kind, num_classes, class_names,
                                                       backbone config, validation metrics, source run

Loading never unpickles: JSON rebuilds the modules, safetensors fills the weights.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from med3dinsight.config.loader import load_config
from med3dinsight.config.model import BackboneConfig
from med3dinsight.models.backbones import Backbone
from med3dinsight.models.export import load_encoder, save_encoder
from med3dinsight.models.heads import HEAD_KINDS, build_task_net

HEAD_FORMAT = "med3dinsight-head/1"
HEAD_WEIGHTS = "head.safetensors"
HEAD_RECORD = "head.json"


def save_task_net(
    net: nn.Module, task: str, cfg: BackboneConfig, out_dir: str | Path, num_classes: int,
    class_names: list[str] | None = None, preprocessing: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None, source_run: str | None = None,
) -> Path:  # fmt: skip
    """Write the encoder (save_encoder) and the head files of a SegmentationNet / ClassificationNet."""
    out = Path(out_dir)
    save_encoder(Backbone(cfg, net.encoder, nn.Identity()), out, preprocessing, source_run)
    tensors = {f"head.{k}": v.detach().cpu().contiguous() for k, v in net.head.state_dict().items()}
    record = {
        "format": HEAD_FORMAT, "task": task, "kind": HEAD_KINDS[task], "num_classes": num_classes,
        "class_names": list(class_names or []), "backbone": dataclasses.asdict(cfg), "metrics": metrics or {},
        "source_run": source_run,
    }  # fmt: skip
    save_file(tensors, str(out / f".{HEAD_WEIGHTS}.tmp"), metadata={"format": HEAD_FORMAT})
    os.replace(out / f".{HEAD_WEIGHTS}.tmp", out / HEAD_WEIGHTS)
    (out / f".{HEAD_RECORD}.tmp").write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(out / f".{HEAD_RECORD}.tmp", out / HEAD_RECORD)
    return out


def load_task_net(export_dir: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the task network of an export (encoder + head) in eval mode, and its head record.

    Raises:
        ValueError: when the folder has no head, an unknown format, or weights that do not match.
    """
    d = Path(export_dir)
    if not (d / HEAD_RECORD).is_file() or not (d / HEAD_WEIGHTS).is_file():
        raise ValueError(f"no task head in {d} (needs {HEAD_RECORD} and {HEAD_WEIGHTS})")
    record = json.loads((d / HEAD_RECORD).read_text())
    if record.get("format") != HEAD_FORMAT:
        raise ValueError(f"{d / HEAD_RECORD}: unknown format {record.get('format')!r}, expected {HEAD_FORMAT!r}")
    cfg = load_config(BackboneConfig, data=record["backbone"])
    encoder = load_encoder(d, device).encoder
    net = build_task_net(record["task"], cfg, record["num_classes"], encoder)
    state = {k[len("head."):]: v for k, v in load_file(str(d / HEAD_WEIGHTS), device=device).items()}
    missing, unexpected = net.head.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{d / HEAD_WEIGHTS} does not match {HEAD_RECORD}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")  # fmt: skip
    return net.to(device).eval(), record
