"""The pretraining index: captioned slices of the store's volumes, filtered, with their 2D embeddings.

Reads captions/<run>/captions.parquet and the embedding matrices through `captioning.reader.CaptionRun`,
and the volume shapes and modalities from catalog/volumes.parquet (no voxels are opened).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from med3dinsight.captioning.reader import CaptionRun
from med3dinsight.io.catalog import read_catalog
from med3dinsight.io.store import Store
from med3dinsight.models.psat import PLANES
from med3dinsight.train.crops import CropTooLargeError, check_crop_fits

log = logging.getLogger(__name__)


class NoCaptionsError(ValueError):
    """The store has no usable captions for pretraining."""


@dataclass(slots=True)
class CaptionIndex:
    """Captioned slices as parallel arrays (length N entries), plus per-volume facts (V volumes).

    Attributes:
        volume_ids, modalities, shapes_V3: per volume (shape (z, y, x)).
        volume_N, plane_N, slice_N, axis_N, row_N: per entry: volume position in `volume_ids`, plane id
            (models.psat.PLANES), slice index, array axis, row of the embedding matrices.
        image_emb, text_emb: (rows, E) float32 matrices (memory-mapped for local stores).
    """

    volume_ids: list[str]
    modalities: list[str | None]
    shapes_V3: np.ndarray
    volume_N: np.ndarray
    plane_N: np.ndarray
    slice_N: np.ndarray
    axis_N: np.ndarray
    row_N: np.ndarray
    image_emb: np.ndarray
    text_emb: np.ndarray

    def __len__(self) -> int:
        return int(self.volume_N.shape[0])

    @property
    def embedding_dim(self) -> int:
        return int(self.image_emb.shape[1])


def available_runs(store: Store) -> list[str]:
    """Names of the consolidated caption runs of a store."""
    base = store.path("captions")
    if not store.exists(base):
        return []
    runs = [p.rstrip("/").rsplit("/", 1)[-1] for p in store.fs.ls(base, detail=False)]
    return sorted(r for r in runs if store.exists(store.path("captions", r, "captions.parquet")))


def load_caption_index(
    store: Store, run: str, quality: Sequence[str], crop_zyx: Sequence[int], small_volumes: str = "error"
) -> CaptionIndex:
    """Build the index of caption run `run`, keeping entries whose quality is in `quality`.

    Args:
        store: the store.
        run: caption run name (captions/<run>/).
        quality: caption quality flags to keep.
        crop_zyx: crop size, checked against every volume.
        small_volumes: "error", "skip" or "pad" for volumes smaller than the crop.

    Raises:
        NoCaptionsError: no such run, or no caption survives the filters.
        CropTooLargeError: a volume is smaller than the crop and `small_volumes` is "error".
    """
    try:
        captions = CaptionRun(store, run)
    except FileNotFoundError:
        raise NoCaptionsError(
            f"no captions in {store.root}: caption run {run!r} not found (available: {available_runs(store) or 'none'};"
            " run the caption stage first, or set data.caption_run)"
        ) from None
    volumes = {r["volume_id"]: r for r in read_catalog(store) if r["status"] == "ok" and not r.get("is_label")}
    table = captions.table
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in
            ("volume_id", "plane", "slice_index", "array_axis", "quality", "error", "row")}  # fmt: skip
    keep = np.isin(cols["quality"], list(quality)) & np.array([e is None for e in cols["error"]], dtype=bool)
    keep &= np.array([v in volumes for v in cols["volume_id"]], dtype=bool)
    ids = sorted({str(v) for v in cols["volume_id"][keep]})
    usable = []
    for vid in ids:
        try:
            check_crop_fits(vid, volumes[vid]["shape"], crop_zyx)
            usable.append(vid)
        except CropTooLargeError:
            if small_volumes == "error":
                raise
            if small_volumes == "pad":
                usable.append(vid)
            else:
                log.warning("skipping volume %s of shape %s: smaller than the crop %s", vid,
                            volumes[vid]["shape"], list(crop_zyx))  # fmt: skip
    position = {vid: i for i, vid in enumerate(usable)}
    keep &= np.array([v in position for v in cols["volume_id"]], dtype=bool)
    if not keep.any():
        raise NoCaptionsError(
            f"no captions in {store.root} run {run!r} pass the filters: {len(table)} rows, quality kept "
            f"{list(quality)}, qualities present {sorted(set(cols['quality'].tolist()))}, "
            f"{len(volumes)} ingested volumes (data.quality, data.small_volumes)"
        )
    plane_id = {p: i for i, p in enumerate(PLANES)}
    return CaptionIndex(
        volume_ids=usable,
        modalities=[volumes[v]["modality"] for v in usable],
        shapes_V3=np.asarray([volumes[v]["shape"] for v in usable], dtype=np.int64).reshape(-1, 3),
        volume_N=np.asarray([position[v] for v in cols["volume_id"][keep]], dtype=np.int64),
        plane_N=np.asarray([plane_id[p] for p in cols["plane"][keep]], dtype=np.int64),
        slice_N=cols["slice_index"][keep].astype(np.int64),
        axis_N=cols["array_axis"][keep].astype(np.int64),
        row_N=cols["row"][keep].astype(np.int64),
        image_emb=captions.image_embeddings,
        text_emb=captions.text_embeddings,
    )
