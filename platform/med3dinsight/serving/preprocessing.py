"""A request volume -> encoder inputs, exactly as the export's preprocessing record prescribes.

Uploads go through the ingest stage's own reader, validator and preprocessing (`read_checked_image`,
`preprocess_image`), so they get the voxels ingest would store and the same reason codes when refused.
Stored volumes are read as ingest wrote them. Both then share `windows.scale_intensity` and the crop
policy, which is why an upload and its ingested copy give the same embedding.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.config.serve import CropConfig
from med3dinsight.ingest.reading import read_checked_image
from med3dinsight.ingest.reasons import Reason, VolumeRejected
from med3dinsight.ingest.volume import PIPELINE_VERSION, preprocess_hash, preprocess_image
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import VolumeNotFoundError, open_volume
from med3dinsight.serving import errors
from med3dinsight.serving.errors import ServeError
from med3dinsight.serving.windows import model_input_policy, scale_intensity, window_starts, windows_array

UPLOAD_SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd", ".zip")
VOLUME_ID = re.compile(r"^[0-9a-f]{16}$")


@dataclass(slots=True)
class PreparedVolume:
    """Encoder inputs of one request volume, and what was done to get them.

    Attributes:
        windows_W1DHW: float32 encoder inputs, one per window.
        starts_zyx: start voxel of each window in the preprocessed volume.
        shape_zyx: shape of the preprocessed volume.
        geometry: preprocessed grid (spacing, origin, direction; ITK order).
        native_geometry: the input's grid as read (for label maps in the input's geometry).
        applied: the preprocessing that was applied (returned to the client).
    """

    windows_W1DHW: np.ndarray
    starts_zyx: list[tuple[int, int, int]]
    shape_zyx: tuple[int, int, int]
    geometry: dict[str, Any]
    native_geometry: dict[str, Any]
    applied: dict[str, Any] = field(default_factory=dict)


class RequestPreprocessor:
    """Turns uploads and stored volumes into encoder inputs per an export's preprocessing record.

    Args:
        record: the export's parsed encoder.json.
        crop: the serving crop policy.
        memory_budget_mb: refuse volumes whose float32 voxels exceed this (from the header).
        max_zip_files: most files accepted in a DICOM .zip.

    Raises:
        ValueError: when the record has no ingest preprocessing or another pipeline version.
    """

    def __init__(
        self, record: dict[str, Any], crop: CropConfig, memory_budget_mb: float, max_zip_files: int = 4096
    ) -> None:
        self.ingest_record = ingest_record_of(record)
        sections = {k: self.ingest_record[k] for k in ("preprocess", "zarr") if k in self.ingest_record}
        self.ingest_cfg = load_config(IngestConfig, data={"input": "<request>", **sections})
        self.policy = model_input_policy(record)
        self.crop = crop
        self.memory_budget_mb = memory_budget_mb
        self.max_zip_files = max_zip_files

    def from_upload(self, data: bytes, filename: str) -> PreparedVolume:
        """Read, validate and preprocess an uploaded file (suffix decides the format).

        Raises:
            ServeError: 415 for an unsupported suffix or unknown format, 422 for an invalid volume.
        """
        name = safe_name(filename)
        suffix = upload_suffix(name)
        with tempfile.TemporaryDirectory(prefix="m3d-serve-") as tmp:
            if suffix == ".zip":
                files, kind = self._unzip(data, tmp, name), "dicom"
            else:
                files, kind = [os.path.join(tmp, f"upload{suffix}")], "file"
                with open(files[0], "wb") as f:
                    f.write(data)
            try:
                voxels, attrs = self._read_and_preprocess(files, kind, name, tmp)
            except VolumeRejected as e:
                raise errors.from_rejection(VolumeRejected(e.reason, e.message.replace(tmp, name))) from None
        return self._prepare(voxels, attrs, {"source": "upload", "filename": name})

    def from_store(self, store: Store, volume_id: str) -> PreparedVolume:
        """Encoder inputs of a volume already in the store.

        Raises:
            ServeError: 404 for an unknown id, 422 when it was ingested with other preprocessing or is too big.
        """
        if not VOLUME_ID.match(volume_id):
            raise ServeError(404, errors.UNKNOWN_VOLUME, f"volume_id must be 16 hex digits, got {volume_id!r}")
        try:
            volume = open_volume(store, volume_id, cache=None)
        except VolumeNotFoundError as e:
            raise ServeError(404, errors.UNKNOWN_VOLUME, str(e)) from None
        stored = volume.attrs.get("preprocessing", {})
        if stored.get("is_label") or preprocess_hash(_voxel_record(stored)) != preprocess_hash(
            _voxel_record(self.ingest_record)
        ):
            raise ServeError(
                422, errors.PREPROCESSING_MISMATCH,
                f"volume {volume_id} was ingested with {_voxel_record(stored)}, the model expects "
                f"{_voxel_record(self.ingest_record)}; ingest the source again with the model's ingest config",
            )  # fmt: skip
        needed_mb = float(np.prod(volume.shape)) * 4 / 2**20
        if needed_mb > self.memory_budget_mb:
            raise ServeError(
                422, str(Reason.OVER_MEMORY_BUDGET),
                f"volume {volume_id} needs {needed_mb:.1f} MB as float32 (limits.memory_budget_mb = "
                f"{self.memory_budget_mb})",
            )  # fmt: skip
        attrs = volume.attrs
        return self._prepare(np.asarray(volume.level(0)[...]), attrs, {"source": "store", "volume_id": volume_id})

    def _read_and_preprocess(
        self, files: list[str], kind: str, name: str, scratch_dir: str
    ) -> tuple[np.ndarray, dict[str, Any]]:
        pp = self.ingest_cfg.preprocess
        try:
            image, header = read_checked_image(
                files, kind, name, pp.orientation, pp.target_spacing, self.memory_budget_mb, scratch_dir=scratch_dir
            )
        except VolumeRejected:
            raise
        except Exception as e:  # as in ingest: an unforeseen header error is still bad input
            raise VolumeRejected(Reason.UNREADABLE, f"{name}: {type(e).__name__}: {e}") from e
        return preprocess_image(image, header, self.ingest_cfg, False, name)

    def _prepare(self, voxels: np.ndarray, attrs: dict[str, Any], source: dict[str, Any]) -> PreparedVolume:
        window, crop_zyx = self.policy["ct_window_hu"], self.policy["crop_size"]
        volume = scale_intensity(voxels, attrs["modality"], window)
        fill = float(scale_intensity(np.asarray([attrs["background"]]), attrs["modality"], window)[0])
        starts = window_starts(volume.shape, crop_zyx, self.crop.mode, self.crop.overlap, self.crop.max_windows)
        geometry = attrs["geometry"]
        applied = {
            **source,
            "orientation": self.ingest_cfg.preprocess.orientation,
            "target_spacing": self.ingest_cfg.preprocess.target_spacing,
            "modality": attrs["modality"],
            "intensity": attrs["intensity"],
            "shape_zyx": list(volume.shape),
            "spacing": list(geometry["spacing"]),
            "model_input": dict(self.policy),
            "crop": {"mode": self.crop.mode, "overlap": self.crop.overlap, "num_windows": len(starts)},
            "preprocess_hash": preprocess_hash(self.ingest_record),
        }
        return PreparedVolume(
            windows_array(volume, starts, crop_zyx, fill), starts, tuple(volume.shape), geometry,
            attrs["native_geometry"], applied,
        )  # fmt: skip

    def _unzip(self, data: bytes, tmp: str, name: str) -> list[str]:
        """Extract a DICOM series zip under generated names (member names never become paths)."""
        budget = int(self.memory_budget_mb * 2**20)
        folder = os.path.join(tmp, "dicom")
        os.makedirs(folder)
        files: list[str] = []
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                members = [m for m in archive.infolist() if not m.is_dir() and not _is_junk(m.filename)]
                if len(members) > self.max_zip_files:
                    raise ServeError(
                        422, errors.BAD_REQUEST, f"{name}: {len(members)} files (limits.max_zip_files = "
                        f"{self.max_zip_files})",
                    )  # fmt: skip
                total = 0
                for index, member in enumerate(members):
                    path = os.path.join(folder, f"{index:06d}.dcm")
                    with archive.open(member) as src, open(path, "wb") as dst:
                        while block := src.read(1 << 20):
                            total += len(block)
                            if total > budget:  # a zip bomb lies in its headers; count real bytes
                                raise ServeError(
                                    413, errors.PAYLOAD_TOO_LARGE,
                                    f"{name}: unpacks to over {self.memory_budget_mb} MB (limits.memory_budget_mb)",
                                )  # fmt: skip
                            dst.write(block)
                    files.append(path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as e:
            raise ServeError(422, str(Reason.UNREADABLE), f"{name}: not a readable zip ({e})") from None
        if not files:
            raise ServeError(422, str(Reason.UNREADABLE), f"{name}: the zip holds no files")
        dicom = [f for f in files if _has_dicom_magic(f)]
        return dicom or files


def ingest_record_of(record: dict[str, Any]) -> dict[str, Any]:
    """The ingest preprocessing record of an export (pretraining's `ingest` section, or the record itself).

    Raises:
        ValueError: when there is none, when training volumes were preprocessed differently, or when it is
            from another ingest pipeline version.
    """
    pre = record.get("preprocessing") or {}
    ingest = pre.get("ingest", pre if "preprocess" in pre else None)
    if isinstance(ingest, list):
        kinds = {preprocess_hash(_voxel_record(r)) for r in ingest}
        if len(kinds) != 1:
            raise ValueError(f"the export was trained on volumes with {len(kinds)} different preprocessings")
        ingest = ingest[0]
    if not isinstance(ingest, dict) or "preprocess" not in ingest:
        raise ValueError(
            "the export has no ingest preprocessing record (preprocessing.ingest): Serve cannot know how "
            "inputs were prepared"
        )
    if ingest.get("pipeline_version") != PIPELINE_VERSION:
        raise ValueError(
            f"the export was trained on ingest pipeline_version {ingest.get('pipeline_version')}, this code "
            f"preprocesses with version {PIPELINE_VERSION}"
        )
    return {k: ingest[k] for k in ("pipeline_version", "is_label", "preprocess", "zarr") if k in ingest}


def upload_suffix(filename: str) -> str:
    """The supported suffix of an upload's file name.

    Raises:
        ServeError: 415 naming the supported suffixes.
    """
    lower = filename.lower()
    for suffix in UPLOAD_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    raise ServeError(
        415, errors.UNSUPPORTED_MEDIA_TYPE, f"{filename!r}: supported uploads are {', '.join(UPLOAD_SUFFIXES)}"
    )


def safe_name(filename: str | None) -> str:
    """The base name of an uploaded file, restricted to safe characters (for messages only)."""
    base = os.path.basename((filename or "").replace("\\", "/"))
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:128] or "upload"


def _voxel_record(record: dict[str, Any]) -> dict[str, Any]:
    """The part of an ingest record that decides voxel values (the zarr layout does not)."""
    return {"pipeline_version": record.get("pipeline_version"), "preprocess": record.get("preprocess")}


def _is_junk(member: str) -> bool:
    base = member.rsplit("/", 1)[-1]
    return member.startswith("__MACOSX/") or base.startswith("._") or base.upper() == "DICOMDIR"


def _has_dicom_magic(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"

