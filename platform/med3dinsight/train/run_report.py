"""The readable side of a run folder: merged metrics (JSONL), a text log and loss curves (PNG)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from med3dinsight.io.store import Store


def format_log(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """A fixed-width table, one line per step, of `keys` (missing values blank)."""
    header = "  ".join(f"{k:>12s}" for k in keys)
    lines = [header]
    for row in rows:
        cells = []
        for k in keys:
            v = row.get(k)
            cells.append(f"{v:12.5g}" if isinstance(v, float) else f"{'' if v is None else v!s:>12s}")
        lines.append("  ".join(cells))
    return "\n".join(lines) + "\n"


def plot_curves(rows: Sequence[dict[str, Any]], keys: Sequence[str], title: str) -> bytes:
    """PNG bytes of `keys` against `step` (one panel per key)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in rows)] or ["step"]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.0), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="." if len(points) < 50 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def write_run_report(store: Store, experiment: str, rows: Sequence[dict[str, Any]], log_keys: Sequence[str],
                     plot_keys: Sequence[str]) -> dict[str, str]:  # fmt: skip
    """Write metrics.jsonl, train_log.txt and loss_curves.png into runs/<experiment>/; returns their paths."""
    names = ("metrics.jsonl", "train_log.txt", "loss_curves.png")
    paths = {name: store.path("runs", experiment, name) for name in names}
    store.fs.pipe_file(paths["metrics.jsonl"], "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
    store.fs.pipe_file(paths["train_log.txt"], format_log(rows, log_keys).encode())
    store.fs.pipe_file(paths["loss_curves.png"], plot_curves(rows, plot_keys, experiment))
    return paths
