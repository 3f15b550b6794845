"""Training checkpoints (model, optimiser, scheduler, counters) and per-step metric logs in the run folder.

A checkpoint directory holds `state.pt`: a dict of state dicts and plain counters, written with torch.save
and read back with `weights_only=True` (no arbitrary unpickling). Ray Train copies it into
runs/<experiment>/checkpoint_*/ and keeps `checkpoint.num_to_keep` of them.

Metrics: rank 0 flushes the rows logged since the previous checkpoint to runs/<experiment>/metrics/
step_<step>.jsonl when it reports that checkpoint. Steps re-run after a restart overwrite or follow them;
`read_metrics` keeps the newest row per step.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch
from torch import nn

from med3dinsight.io.store import Store

STATE_FILE = "state.pt"


def save_state(directory: str, module: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, counters: dict[str, Any]) -> str:  # fmt: skip
    """Write `state.pt` into `directory`: module, optimiser and scheduler state dicts plus `counters`."""
    state = {
        "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "counters": dict(counters),
    }
    path = os.path.join(directory, STATE_FILE)
    torch.save(state, path)
    return path


def load_state(directory: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The dict written by `save_state` (tensors on `map_location`), without unpickling arbitrary objects."""
    return torch.load(os.path.join(directory, STATE_FILE), map_location=map_location, weights_only=True)


def restore(state: dict[str, Any], module: nn.Module, optimizer: torch.optim.Optimizer | None = None,
            scheduler: Any = None) -> dict[str, Any]:  # fmt: skip
    """Load a `load_state` dict into the training objects; returns its counters."""
    module.load_state_dict(state["module"])
    if optimizer is not None:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    return dict(state["counters"])


def checkpoint_from_state(module: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                          counters: dict[str, Any]) -> Any:  # fmt: skip
    """A `ray.train.Checkpoint` of the training state in a fresh temporary directory."""
    from ray.train import Checkpoint

    directory = tempfile.mkdtemp(prefix="m3d-ckpt-")
    save_state(directory, module, optimizer, scheduler, counters)
    return Checkpoint.from_directory(directory)


def flush_metrics(store: Store, experiment: str, rows: list[dict[str, Any]]) -> None:
    """Write `rows` (one dict per step, with key `step`) as one part file of the run's metric log."""
    if not rows:
        return
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)
    path = store.path("runs", experiment, "metrics", f"step_{rows[-1]['step']:09d}.jsonl")
    store.fs.pipe_file(path, text.encode())


def read_metrics(store: Store, experiment: str) -> list[dict[str, Any]]:
    """Every logged step of the run, the newest row per step, sorted by step."""
    folder = store.path("runs", experiment, "metrics")
    if not store.exists(folder):
        return []
    rows: dict[int, dict[str, Any]] = {}
    for path in sorted(store.fs.ls(folder, detail=False)):
        if not path.endswith(".jsonl"):
            continue
        with store.fs.open(path, "r") as f:
            for line in f:
                row = json.loads(line)
                old = rows.get(row["step"])
                if old is None or row.get("time", 0) >= old.get("time", 0):
                    rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]
