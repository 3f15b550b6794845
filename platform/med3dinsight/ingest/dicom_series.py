"""Geometry checks of a DICOM series from per-file tags (SimpleITK only warns, or says nothing).

Reads every file's header with pydicom (no pixels), refuses inconsistent series with a named reason and
returns the files sorted along the slice normal plus the volume geometry, all before pixels are read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from med3dinsight.ingest.reasons import Reason, VolumeRejected

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between direction-cosine components of slices of one series."""
RELATIVE_STEP_TOLERANCE = 0.01
"""Slice steps may differ from the median step by this fraction (plus 1 micron) before refusal."""
TILT_TOLERANCE = 1e-3
"""Largest in-plane drift per mm along the normal (tan of the tilt angle, about 0.06 degrees)."""
REQUIRED_TAGS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns")


@dataclass(frozen=True, slots=True)
class DicomSeriesGeometry:
    """A validated series: files sorted along the slice normal, ITK geometry (x, y, z).

    For a single multi-frame file only `size` is known here (the rest are placeholders); the image reader's
    header is authoritative for it.
    """

    files: list[str]
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    modality: str | None
    num_frames: int


def scan_dicom_series(files: list[str], name: str) -> DicomSeriesGeometry:
    """Validate the per-file geometry of one series and sort its files.

    Args:
        files: local paths of the series' files (any order).
        name: the source URI for messages.

    Raises:
        VolumeRejected: UNREADABLE, NOT_3D, DICOM_MISSING_GEOMETRY, DICOM_MIXED_SLICE_SIZES,
            DICOM_MIXED_ORIENTATION, DICOM_DUPLICATE_POSITIONS, DICOM_GANTRY_TILT, DICOM_MISSING_SLICES,
            DICOM_NONUNIFORM_SPACING.
    """
    if not files:
        raise VolumeRejected(Reason.UNREADABLE, f"{name}: DICOM series without files")
    headers = [_read_header(f) for f in files]
    first = headers[0]
    modality = str(first.get("Modality", "")) or None
    num_frames = int(first.get("NumberOfFrames", 1) or 1)
    if int(first.get("SamplesPerPixel", 1) or 1) != 1:
        raise VolumeRejected(Reason.NOT_3D, f"{files[0]}: {first.SamplesPerPixel} samples per pixel (colour)")
    if len(files) == 1:
        if num_frames > 1:  # one multi-frame file: GDCM reads its geometry, nothing to cross-check here
            return DicomSeriesGeometry(files, (int(first.Columns), int(first.Rows), num_frames),
                                       (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0),
                                       modality, num_frames)  # fmt: skip
        raise VolumeRejected(Reason.NOT_3D, f"{name}: a single 2D slice ({files[0]})")
    for path, header in zip(files, headers, strict=True):
        missing = [tag for tag in REQUIRED_TAGS if header.get(tag) is None]
        if missing:
            raise VolumeRejected(Reason.DICOM_MISSING_GEOMETRY, f"{path}: no {', '.join(missing)}")
        if int(header.get("NumberOfFrames", 1) or 1) > 1:
            raise VolumeRejected(Reason.NOT_3D, f"{path}: multi-frame file inside a multi-file series")

    sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
    pixel_spacings = np.array([[float(v) for v in h.PixelSpacing] for h in headers])
    if len(sizes) > 1 or np.abs(pixel_spacings - pixel_spacings[0]).max() > ORIENTATION_TOLERANCE:
        raise VolumeRejected(
            Reason.DICOM_MIXED_SLICE_SIZES,
            f"{name}: slices with different Rows x Columns {sorted(sizes)} or PixelSpacing "
            f"{np.unique(pixel_spacings, axis=0).tolist()}",
        )
    orientations = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
    bad = np.flatnonzero(np.abs(orientations - orientations[0]).max(axis=1) > ORIENTATION_TOLERANCE)
    if bad.size:
        raise VolumeRejected(
            Reason.DICOM_MIXED_ORIENTATION,
            f"{files[bad[0]]}: ImageOrientationPatient {orientations[bad[0]].tolist()} differs from "
            f"{orientations[0].tolist()} of {files[0]}",
        )
    row, col = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(row, col)
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    sorted_files = [files[i] for i in order]
    positions, along = positions[order], along[order]
    steps = np.diff(along)
    _check_steps(steps, positions, sorted_files, name)
    offsets = positions - positions[0]
    lateral = np.linalg.norm(offsets - np.outer(offsets @ normal, normal), axis=1)
    drift = lateral[1:] / np.maximum(along[1:] - along[0], 1e-12)
    if drift.max() > TILT_TOLERANCE and lateral.max() > 1e-3:
        raise VolumeRejected(
            Reason.DICOM_GANTRY_TILT,
            f"{name}: slice positions drift {lateral.max():.3g} mm sideways from the slice normal "
            f"(tilt about {np.degrees(np.arctan(drift.max())):.2f} degrees; GantryDetectorTilt "
            f"{first.get('GantryDetectorTilt')})",
        )
    direction = np.stack([row, col, normal], axis=1)  # columns: image axes in LPS
    return DicomSeriesGeometry(
        files=sorted_files,
        size=(int(first.Columns), int(first.Rows), len(files)),
        spacing=(float(pixel_spacings[0, 1]), float(pixel_spacings[0, 0]), float(np.median(steps))),
        origin=tuple(float(v) for v in positions[0]),
        direction=tuple(float(v) for v in direction.ravel()),
        modality=modality,
        num_frames=1,
    )


def _check_steps(steps: np.ndarray, positions: np.ndarray, files: list[str], name: str) -> None:
    median = float(np.median(steps))
    duplicates = np.flatnonzero(steps < max(1e-3, 1e-3 * median))
    if duplicates.size:
        i = int(duplicates[0])
        raise VolumeRejected(
            Reason.DICOM_DUPLICATE_POSITIONS,
            f"{name}: {files[i]} and {files[i + 1]} share position {positions[i].tolist()}",
        )
    off = np.flatnonzero(np.abs(steps - median) > RELATIVE_STEP_TOLERANCE * median + 1e-3)
    if not off.size:
        return
    ratios = steps[off] / median
    if np.all((np.abs(ratios - np.rint(ratios)) < 0.1) & (np.rint(ratios) >= 2)):
        num_missing = int(np.rint(ratios).sum() - ratios.size)
        raise VolumeRejected(
            Reason.DICOM_MISSING_SLICES,
            f"{name}: {num_missing} slice(s) missing (gap of {steps[off[0]]:.4g} mm after {files[off[0]]}, "
            f"usual step {median:.4g} mm)",
        )
    raise VolumeRejected(
        Reason.DICOM_NONUNIFORM_SPACING,
        f"{name}: slice steps from {steps.min():.4g} to {steps.max():.4g} mm (median {median:.4g} mm)",
    )


def _read_header(path: str) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=True)  # files without preamble too
    except (InvalidDicomError, OSError, ValueError, EOFError) as e:
        raise VolumeRejected(Reason.UNREADABLE, f"{path}: not a readable DICOM file ({e})") from None
