"""The per-volume work of the ingest stage: one input in, one catalog row out, one OME-Zarr volume published.

`ingest_volume` never raises for bad input: it returns a `rejected` row with a `Reason` code and a
message naming the file. Store I/O errors do raise (they are not the input's fault; Ray retries tasks).

volume_id = the first 16 hex digits of sha256("<source sha256>:<canonical JSON of the preprocessing
record>"), where the record holds PIPELINE_VERSION, is_label, and the whole `preprocess` and `zarr`
config sections. The same bytes with the same config always map to the same id (reruns skip), and a
changed config maps to a new id (old and new outputs never mix). 64 bits: collisions are negligible
for any realistic archive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from typing import Any

import numpy as np
import SimpleITK as sitk

import med3dinsight
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.ingest.reading import ImageHeader, files_sha256, localize, read_checked_image, source_stamp
from med3dinsight.ingest.reasons import Reason, VolumeRejected
from med3dinsight.io import ome_zarr_writer as writer
from med3dinsight.io.sources import Source
from med3dinsight.io.store import Store
from med3dinsight.preprocess.geometry import reorient, resample_to_spacing
from med3dinsight.preprocess.intensity import (
    apply_ct_window,
    apply_mr_percentiles,
    infer_modality,
    intensity_stats,
)

PIPELINE_VERSION = 1
"""Bump when the processing code changes what is stored for an unchanged config (gives new volume_ids)."""
STAT_KEYS = ("min", "max", "mean", "std", "p00_5", "p99_5")
ROW_KEYS = (
    "volume_id", "source", "sha256", "status", "reason", "message", "modality", "is_label", "shape",
    "spacing", "origin", "direction", "native_shape", "native_spacing", "dtype", *STAT_KEYS,
    "preprocess_hash", "source_stamp", "path", "skipped",
)  # fmt: skip


def preprocessing_record(cfg: IngestConfig, is_label: bool = False) -> dict[str, Any]:
    """Everything that decides the stored voxels: hashed into the volume_id and stored with the volume."""
    return {
        "pipeline_version": PIPELINE_VERSION,
        "is_label": is_label,
        "preprocess": dataclasses.asdict(cfg.preprocess),
        "zarr": dataclasses.asdict(cfg.zarr),
    }


def preprocess_hash(record: dict[str, Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no spaces) of a preprocessing record."""
    return hashlib.sha256(_canonical_json(record).encode()).hexdigest()


def make_volume_id(source_sha256: str, record: dict[str, Any]) -> str:
    """16 hex digits identifying (source bytes, preprocessing record); see the module docstring."""
    return hashlib.sha256(f"{source_sha256}:{_canonical_json(record)}".encode()).hexdigest()[:16]


def empty_row(source: Source) -> dict[str, Any]:
    """A catalog row with every key present and unknown values None."""
    row: dict[str, Any] = dict.fromkeys(ROW_KEYS)
    row.update(source=source.uri, skipped=False)
    return row


def ingest_volume(
    source: Source, cfg: IngestConfig, store: Store, is_label: bool = False, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Validate, preprocess and store one input volume; return its catalog row.

    Steps: skip without reading a byte if `previous` (this source's last ok catalog row) has the same
    source stamp and preprocessing and its volume is published; else copy remote files locally, hash,
    skip if the volume is already published, check headers and
    the memory budget, read and validate voxels, reorient to cfg.preprocess.orientation, resample to
    cfg.preprocess.target_spacing (linear; nearest for labels), apply the modality's intensity policy
    (CT: HU window, int16; MR: nonzero-percentile clip scaled to [0, 1], float32; labels: none, unsigned
    int), write the OME-Zarr pyramid and publish it atomically.

    Args:
        source: one image file or one DICOM series.
        cfg: the ingest config (preprocess, zarr, memory_budget_mb, store_options for remote inputs).
        store: the output store.
        is_label: the input is a label map (integer, nearest-neighbour, no intensity policy).
        previous: the catalog row an earlier run wrote for this source, if it was ok.

    Returns:
        The catalog row (ROW_KEYS). shape is (z, y, x) at level 0; spacing/origin are (x, y, z) mm, LPS;
        direction is 9 floats row-major (ITK); native_shape is the (z, y, x) voxel shape as read.
    """
    row = empty_row(source)
    row["is_label"] = is_label
    record = preprocessing_record(cfg, is_label)
    row["preprocess_hash"] = preprocess_hash(record)
    row["source_stamp"] = source_stamp(source, cfg.store_options)
    if unchanged := _unchanged_volume(source, store, row, previous):
        return unchanged
    local_to_original: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="med3d-ingest-") as tmp_dir:
            local_to_original = localize(source, cfg.store_options, tmp_dir)
            files = list(local_to_original)
            try:
                row["sha256"] = files_sha256(files)
            except OSError as e:
                raise VolumeRejected(Reason.UNREADABLE, f"{source.uri}: cannot be read ({e})") from None
            row["volume_id"] = make_volume_id(row["sha256"], record)
            if published := _published_row(store, row["volume_id"], source, row["source_stamp"]):
                return published
            path = store.volume_path(row["volume_id"])
            pp = cfg.preprocess
            try:
                image, header = read_checked_image(
                    files, source.kind, source.uri, pp.orientation, pp.target_spacing, cfg.memory_budget_mb, is_label,
                    scratch_dir=tmp_dir,
                )  # fmt: skip
            except VolumeRejected:
                raise
            except Exception as e:  # a header field no check foresaw (e.g. a non-numeric size): still bad input
                raise VolumeRejected(Reason.UNREADABLE, f"{source.uri}: {type(e).__name__}: {e}") from e
            try:
                voxels, attrs = preprocess_image(image, header, cfg, is_label, source.uri)
            except VolumeRejected:
                raise
            except Exception as e:  # a bug must not stop the other volumes of the job
                raise VolumeRejected(Reason.INTERNAL_ERROR, f"{source.uri}: {type(e).__name__}: {e}") from e
        attrs.update(volume_id=row["volume_id"], source=source.uri, sha256=row["sha256"],
                     preprocessing=record, preprocess_hash=row["preprocess_hash"])  # fmt: skip
        levels = [voxels]
        for _ in range(1, writer.pyramid_level_count(voxels.shape, cfg.zarr.levels)):
            levels.append(writer.downsample(levels[-1], is_label))
        geometry = attrs["geometry"]
        ome = writer.multiscales_metadata(
            row["volume_id"], len(levels), geometry["spacing"][::-1], geometry["origin"][::-1], is_label
        )
        published = writer.write_ome_zarr(store, path, levels, ome, attrs, cfg.zarr)
        return row_from_attrs(attrs, source, path, skipped=not published, stamp=row["source_stamp"])
    except VolumeRejected as e:
        message = e.message
        for local, original in local_to_original.items():
            message = message.replace(local, original)
        row.update(status="rejected", reason=str(e.reason), message=message)
        return row


def _unchanged_volume(
    source: Source, store: Store, row: dict[str, Any], previous: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The row of `previous`'s volume if the source and preprocessing are unchanged and it is published."""
    if not previous or row["source_stamp"] is None or previous.get("status") != "ok":
        return None
    if (previous.get("source_stamp"), previous.get("preprocess_hash")) != (row["source_stamp"], row["preprocess_hash"]):
        return None
    return _published_row(store, previous["volume_id"], source, row["source_stamp"])


def _published_row(store: Store, volume_id: str, source: Source, stamp: str | None) -> dict[str, Any] | None:
    """The `skipped` catalog row of volume `volume_id` if it is published in `store`, else None."""
    path = store.volume_path(volume_id)
    stored = writer.read_volume_attrs(store, path)
    return None if stored is None else row_from_attrs(stored, source, path, skipped=True, stamp=stamp)


def row_from_attrs(
    attrs: dict[str, Any], source: Source, path: str, skipped: bool, stamp: str | None = None
) -> dict[str, Any]:
    """The catalog row of a stored volume, from its NAMESPACE attribute (naming the current source)."""
    row = empty_row(source)
    geometry, native = attrs["geometry"], attrs["native_geometry"]
    row.update(
        volume_id=attrs["volume_id"], sha256=attrs["sha256"], status="ok", modality=attrs["modality"],
        is_label=attrs["is_label"], shape=list(geometry["shape_zyx"]), spacing=list(geometry["spacing"]),
        origin=list(geometry["origin"]), direction=list(geometry["direction"]),
        native_shape=list(native["shape_zyx"]), native_spacing=list(native["spacing"]), dtype=attrs["dtype"],
        preprocess_hash=attrs["preprocess_hash"], source_stamp=stamp, path=path, skipped=skipped,
        **attrs["stats"],
    )  # fmt: skip
    return row


def preprocess_image(
    image: sitk.Image, header: ImageHeader, cfg: IngestConfig, is_label: bool, name: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Reorient, resample and apply the intensity policy: the level-0 voxels (z, y, x) and attributes.

    Shared with Serve, which must turn a request volume into exactly the voxels ingest would store.

    Args:
        image: an image from `read_checked_image` (validated, native geometry).
        header: its header.
        cfg: the config whose `preprocess` section applies.
        is_label: label map (nearest-neighbour, no intensity policy).
        name: the input's name for messages.

    Raises:
        VolumeRejected: CONSTANT_VOLUME when the intensity policy leaves one value.
    """
    pp = cfg.preprocess
    image = reorient(image, pp.orientation)
    if pp.target_spacing is not None:
        background = 0.0 if is_label else float(sitk.GetArrayViewFromImage(image).min())
        image = resample_to_spacing(image, pp.target_spacing, is_label, background)
    voxels = sitk.GetArrayFromImage(image)
    intensity: dict[str, Any]
    if is_label:
        modality, background = None, 0
        voxels = voxels.astype(np.min_scalar_type(int(voxels.max())))
        intensity = {"policy": "label"}
    else:
        modality = infer_modality(pp.modality, header.dicom_modality, float(voxels.min()))
        if modality == "CT":
            voxels = apply_ct_window(voxels, pp.intensity.ct_window)
            intensity = {"policy": "ct_window", "window": list(pp.intensity.ct_window)}
        else:
            voxels, clip_values = apply_mr_percentiles(voxels, pp.intensity.mr_percentiles)
            intensity = {"policy": "mr_percentiles", "percentiles": list(pp.intensity.mr_percentiles),
                         "clip_values": clip_values}  # fmt: skip
        background = float(voxels.min())
        if voxels.max() == voxels.min():
            raise VolumeRejected(
                Reason.CONSTANT_VOLUME, f"{name}: every voxel is {voxels.min()} after the {modality} policy"
            )
    native_size = header.size
    attrs = {
        "format_version": writer.FORMAT_VERSION,
        "package_version": med3dinsight.__version__,
        "modality": modality,
        "is_label": is_label,
        "dtype": str(voxels.dtype),
        "background": background,
        "intensity": intensity,
        "geometry": {
            "spacing": list(image.GetSpacing()),
            "origin": list(image.GetOrigin()),
            "direction": list(image.GetDirection()),
            "shape_zyx": list(voxels.shape),
        },
        "native_geometry": {
            "spacing": list(header.spacing),
            "origin": list(header.origin),
            "direction": list(header.direction),
            "shape_zyx": [int(n) for n in native_size[::-1]],
        },
        "stats": intensity_stats(voxels),
    }
    return voxels, attrs


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
