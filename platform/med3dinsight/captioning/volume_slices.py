"""One volume -> its sampled, rendered slices with prompts (the CPU step before the captioner)."""

from __future__ import annotations

from typing import Any

import numpy as np

from med3dinsight.captioning.generation import build_prompt
from med3dinsight.captioning.render import ct_window_bounds, mr_window_bounds, png_bytes, render_slice
from med3dinsight.captioning.slicing import extract_slice, sample_slices
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume


def volume_window(volume_zyx: np.ndarray, modality: str | None, cfg: CaptionConfig) -> tuple[str, tuple[float, float]]:
    """(label, (low, high)) of the display window of a volume: the CT preset, else MR percentiles of the volume."""
    if modality == "CT":
        center, width = cfg.render.ct_windows[cfg.render.ct_window]
        return f"ct:{cfg.render.ct_window}", ct_window_bounds(center, width)
    low_p, high_p = cfg.render.mr_percentiles
    return f"mr:p{low_p:g}-{high_p:g}", mr_window_bounds(volume_zyx, cfg.render.mr_percentiles)


def foreground_threshold(modality: str | None, cfg: CaptionConfig) -> float:
    return cfg.slices.foreground_ct_hu if modality == "CT" else cfg.slices.foreground_mr


def render_volume_slices(
    store: Store, volume_id: str, cfg: CaptionConfig, done: set[tuple[str, int]] | None = None
) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """The planned slices of one stored volume, and those still to caption, rendered.

    Args:
        store: the store holding volumes/<volume_id>.ome.zarr.
        volume_id: the volume.
        cfg: the caption config (slices, render, captioner prompt, gallery thumbnail size).
        done: (plane, slice_index) pairs already captioned, skipped here.

    Returns:
        (planned, rows): every planned (plane, slice_index), done or not; one row dict per slice to caption:
        volume_id, plane, slice_index, array_axis, position, modality, window, prompt,
        image (uint8 (S, S, 3), S = render.image_size), thumbnail_png (bytes, or None without a gallery).
    """
    volume = open_volume(store, volume_id)
    modality = volume.modality
    level0 = volume.level(0)
    strategy = cfg.slices.strategy
    voxels = level0[...] if strategy == "foreground" else None
    refs = sample_slices(
        voxels if voxels is not None else level0, volume.direction, volume_id, cfg.slices.planes,
        cfg.slices.slices_per_plane, strategy, cfg.slices.seed, foreground_threshold(modality, cfg),
        cfg.slices.foreground_fraction,
    )  # fmt: skip
    planned = [(r.plane, r.slice_index) for r in refs]
    todo = [r for r in refs if (r.plane, r.slice_index) not in (done or set())]
    if not todo:
        return planned, []
    voxels = level0[...] if voxels is None else voxels
    window_name, window = volume_window(voxels, modality, cfg)
    rows = []
    for ref in todo:
        slice_RC, pixel_mm = extract_slice(voxels, volume.spacing, volume.direction, ref.plane, ref.slice_index)
        image = render_slice(slice_RC, pixel_mm, window, cfg.render.image_size)
        thumb = png_bytes(image, cfg.gallery.thumbnail_size) if cfg.gallery.thumbnail_size else None
        rows.append({
            "volume_id": volume_id, "plane": ref.plane, "slice_index": ref.slice_index, "array_axis": ref.array_axis,
            "position": ref.position, "modality": modality or "unknown", "window": window_name,
            "prompt": build_prompt(cfg.captioner.prompt, modality or "medical", ref.plane, ref.position),
            "image": image, "thumbnail_png": thumb,
        })  # fmt: skip
    return planned, rows
