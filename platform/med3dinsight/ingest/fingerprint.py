"""Dataset fingerprint (nnU-Net style): spacing, shape and intensity statistics of the accepted volumes."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

# nnU-Net treats a dataset as anisotropic when the largest median spacing is > 3x the smallest.
ANISOTROPY_RATIO = 3.0


def compute_fingerprint(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summarise the `ok` catalog rows.

    Args:
        rows: catalog rows (see med3dinsight.io.catalog); rejected rows only feed the counts, label maps
            only `num_label_maps` (their intensities are label ids).

    Returns:
        A JSON-able dict: counts, and per modality the median/min/max spacing (x, y, z mm) and shape
        (z, y, x), an anisotropy flag, and intensity statistics aggregated over volumes.
    """
    ok = [r for r in rows if r["status"] == "ok" and not r.get("is_label")]
    by_modality: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        by_modality[r["modality"] or "unknown"].append(r)
    return {
        "num_volumes": len(rows),
        "num_ok": sum(r["status"] == "ok" for r in rows),
        "num_rejected": sum(r["status"] != "ok" for r in rows),
        "num_label_maps": sum(r["status"] == "ok" and bool(r.get("is_label")) for r in rows),
        "modalities": {m: _summary(rs) for m, rs in sorted(by_modality.items())},
    }


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    spacing = np.asarray([r["spacing"] for r in rows], dtype=np.float64)
    shape = np.asarray([r["shape"] for r in rows], dtype=np.int64)
    median_spacing = np.median(spacing, axis=0)
    anisotropy = float(median_spacing.max() / median_spacing.min())
    return {
        "num_volumes": len(rows),
        "spacing_median": median_spacing.tolist(),
        "spacing_min": spacing.min(axis=0).tolist(),
        "spacing_max": spacing.max(axis=0).tolist(),
        "shape_median": np.median(shape, axis=0).tolist(),
        "shape_min": shape.min(axis=0).tolist(),
        "shape_max": shape.max(axis=0).tolist(),
        "anisotropy_ratio": anisotropy,
        "anisotropic": anisotropy > ANISOTROPY_RATIO,
        "intensity": {
            "mean": float(np.mean([r["mean"] for r in rows])),
            "std": float(np.sqrt(np.mean([r["std"] ** 2 for r in rows]))),
            "min": float(min(r["min"] for r in rows)),
            "max": float(max(r["max"] for r in rows)),
            "p00_5_median": float(np.median([r["p00_5"] for r in rows])),
            "p99_5_median": float(np.median([r["p99_5"] for r in rows])),
        },
    }
