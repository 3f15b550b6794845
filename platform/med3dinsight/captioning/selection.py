"""Which volumes a caption run covers, and which of them still have slices to caption (driver side)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from med3dinsight.captioning.model_source import short_hash
from med3dinsight.captioning.outputs import RunPaths, read_plan
from med3dinsight.captioning.slicing import plane_axis, sample_slices
from med3dinsight.config import config_to_dict
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.io.catalog import read_catalog
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import VolumeNotFoundError, open_volume


@dataclass(frozen=True, slots=True)
class VolumePlan:
    """A stored volume to caption and, when it can be known from its header, its slice keys."""

    volume_id: str
    keys: frozenset[tuple[str, int]] | None
    """(plane, slice_index) the run will caption; None when the strategy needs the voxels (foreground)."""

    def pending(self, done: set[tuple[str, int]]) -> bool:
        """True when some slice is not captioned yet (always True when the keys are unknown)."""
        return self.keys is None or not self.keys <= done


def select_volumes(store: Store, cfg: CaptionConfig) -> tuple[list[VolumePlan], list[str]]:
    """The volumes to caption (catalog order) and one message per volume skipped.

    Skipped: volumes ingest rejected, catalog rows whose volume is missing or incomplete in the store,
    45-degree oblique volumes (no plane is defined), and ids in `cfg.volumes` that the catalog does not know.

    Raises:
        ValueError: the store has no catalog (run ingest first).
    """
    catalog = read_catalog(store)
    if not catalog:
        raise ValueError(f"store {store.root} has no catalog/volumes.parquet: run the ingest stage first")
    wanted = set(cfg.volumes)
    rows = [r for r in catalog if not wanted or r["volume_id"] in wanted]
    skipped = [f"{v}: not in the catalog" for v in sorted(wanted - {r["volume_id"] for r in catalog})]
    plans: list[VolumePlan] = []
    seen: set[str] = set()
    for row in rows:
        volume_id = row["volume_id"]
        if row["status"] != "ok":
            skipped.append(f"{row['source']}: rejected by ingest ({row['reason']}: {(row['message'] or '')[:200]})")
            continue
        if volume_id in seen:  # two sources with identical content share one volume
            continue
        seen.add(volume_id)
        try:
            volume = open_volume(store, volume_id)
        except VolumeNotFoundError as e:
            skipped.append(f"{row['source']}: {e}")
            continue
        try:
            plane_axis(volume.direction, "axial")
        except ValueError as e:  # a 45-degree oblique volume has no axial/coronal/sagittal planes to sample
            skipped.append(f"{row['source']}: {e}")
            continue
        keys = _planned_keys(volume.shape, volume.direction, volume_id, cfg)
        if keys is None:  # foreground: known only once a render task has read the voxels
            keys = read_plan(RunPaths(store, cfg.run), volume_id, slices_id(cfg))
        plans.append(VolumePlan(volume_id, keys))
    return plans, skipped


def slices_id(cfg: CaptionConfig) -> str:
    """Hash of the slicing settings: a recorded plan is valid only for the settings it was made with."""
    return short_hash(json.dumps(config_to_dict(cfg.slices), sort_keys=True))


def _planned_keys(
    shape_zyx: tuple[int, int, int], direction: tuple[float, ...], volume_id: str, cfg: CaptionConfig
) -> frozenset[tuple[str, int]] | None:
    if cfg.slices.strategy == "foreground":
        return None
    shape_only = np.broadcast_to(np.zeros((), np.int8), shape_zyx)  # uniform/random read only the shape
    refs = sample_slices(shape_only, direction, volume_id, cfg.slices.planes, cfg.slices.slices_per_plane,
                         cfg.slices.strategy, cfg.slices.seed)  # fmt: skip
    return frozenset((r.plane, r.slice_index) for r in refs)
