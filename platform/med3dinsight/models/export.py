"""Export the pretrained encoder for fine-tuning and serving: safetensors weights + a JSON record.

Layout of an export directory (what `storage/models/<name>/` holds, and all Serve loads):

    encoder.safetensors   backbone encoder weights (`encoder.*`), and PSAT weights (`psat.*`) if kept
    encoder.json          format, backbone and PSAT configs, token and embedding widths,
                          preprocessing record, source run, library versions

Loading never unpickles: the JSON rebuilds the modules from configs, safetensors fills the weights.

Shape legend: B batch, C input channels, D/H/W voxels, N tokens, T token width, E embedding width.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from med3dinsight import __version__
from med3dinsight.config.loader import load_config
from med3dinsight.config.model import BackboneConfig, PSATConfig
from med3dinsight.models.backbones import Backbone, build_backbone
from med3dinsight.models.med3dinsight import Med3DInsight
from med3dinsight.models.psat import PSAT

FORMAT = "med3dinsight-encoder/1"
WEIGHTS = "encoder.safetensors"
RECORD = "encoder.json"


class ExportedEncoder(nn.Module):
    """The deployable encoder: backbone encoder, optionally with PSAT for slice-conditioned embeddings.

    Attributes:
        encoder: `forward(x_BCDHW) -> tokens_BNT`.
        psat: the PSAT module, or None when it was not exported.
        record: the parsed `encoder.json`.
    """

    def __init__(self, encoder: nn.Module, psat: PSAT | None, record: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        self.psat = psat
        self.record = record

    @property
    def embedding_dim(self) -> int:
        return int(self.record["embedding_dim"])

    def forward(self, x_BCDHW: Tensor) -> Tensor:
        """Bottleneck tokens (B, N, T)."""
        return self.encoder(x_BCDHW)

    def embed(
        self, x_BCDHW: Tensor, plane_B: Tensor | None = None, slice_pos_B: Tensor | None = None
    ) -> Tensor:
        """Embedding (B, E): PSAT query 0 for the given plane/slice if PSAT was exported, else mean token.

        Raises:
            ValueError: when PSAT is present but plane or slice position is missing.
        """
        tokens_BNT = self.encoder(x_BCDHW)
        if self.psat is None:
            return tokens_BNT.mean(1)
        if plane_B is None or slice_pos_B is None:
            raise ValueError("this export includes PSAT: embed() needs plane_B and slice_pos_B")
        return self.psat(tokens_BNT, plane_B, slice_pos_B)[:, 0]


def save_encoder(
    model: Med3DInsight | Backbone,
    out_dir: str | Path,
    preprocessing: dict[str, Any] | None = None,
    source_run: str | None = None,
    include_psat: bool = True,
) -> Path:
    """Write `encoder.safetensors` and `encoder.json` under `out_dir` (each replaced atomically).

    Args:
        model: the pretraining model (backbone + PSAT) or a bare backbone.
        out_dir: local export directory (created if missing).
        preprocessing: the preprocessing record inputs must go through (spacing, orientation, window...).
        source_run: where the weights came from (run name or checkpoint URI).
        include_psat: keep PSAT (needed for slice-conditioned embeddings); ignored for a bare backbone.

    Returns:
        The export directory.
    """
    backbone = model.backbone if isinstance(model, Med3DInsight) else model
    psat = model.psat if isinstance(model, Med3DInsight) and include_psat else None
    tensors = {f"encoder.{k}": v for k, v in backbone.encoder.state_dict().items()}
    if psat is not None:
        tensors.update({f"psat.{k}": v for k, v in psat.state_dict().items()})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    record = {
        "format": FORMAT,
        "backbone": dataclasses.asdict(backbone.cfg),
        "psat": dataclasses.asdict(psat.cfg) if psat is not None else None,
        "token_dim": backbone.cfg.token_dim,
        "embedding_dim": psat.cfg.out_dim if psat is not None else backbone.cfg.token_dim,
        "embedding": "psat_query0" if psat is not None else "mean_token",
        "preprocessing": preprocessing or {},
        "source_run": source_run,
        "versions": {"med3dinsight": __version__, "torch": torch.__version__},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # weights first, record last: a reader that finds the record finds matching weights
    save_file(tensors, str(out / f".{WEIGHTS}.tmp"), metadata={"format": FORMAT})
    os.replace(out / f".{WEIGHTS}.tmp", out / WEIGHTS)
    (out / f".{RECORD}.tmp").write_text(json.dumps(record, indent=2, sort_keys=True))
    os.replace(out / f".{RECORD}.tmp", out / RECORD)
    return out


def load_encoder(export_dir: str | Path, device: str | torch.device = "cpu") -> ExportedEncoder:
    """Rebuild an exported encoder from its JSON record and safetensors weights (no unpickling).

    Raises:
        ValueError: on a missing file, an unknown format, or weights that do not match the record.
    """
    d = Path(export_dir)
    if not (d / RECORD).is_file() or not (d / WEIGHTS).is_file():
        raise ValueError(f"not an encoder export (needs {RECORD} and {WEIGHTS}): {d}")
    record = json.loads((d / RECORD).read_text())
    if record.get("format") != FORMAT:
        raise ValueError(f"{d / RECORD}: unknown format {record.get('format')!r}, expected {FORMAT!r}")
    backbone_cfg = load_config(BackboneConfig, data=record["backbone"])
    encoder = build_backbone(backbone_cfg).encoder
    psat = None
    if record["psat"] is not None:
        psat = PSAT(load_config(PSATConfig, data=record["psat"]), backbone_cfg.token_dim)
    tensors = load_file(str(d / WEIGHTS), device=str(device))
    _load(encoder, tensors, "encoder.", d)
    if psat is not None:
        _load(psat, tensors, "psat.", d)
    return ExportedEncoder(encoder, psat, record).to(device).eval()


def _load(module: nn.Module, tensors: dict[str, Tensor], prefix: str, d: Path) -> None:
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        diff = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
        raise ValueError(f"{d / WEIGHTS} does not match {RECORD} ({prefix}*): differing tensors {diff[:5]}")
    module.load_state_dict(state)
