"""Why a volume is refused: stable reason codes, the exception that carries one, and the image validator.

The codes are written into the catalog (`reason` column) and counted in the job summary, so they are a
public contract: add new ones, never rename or reuse. `validate_image` is shared with the Serve stage,
which must refuse the same inputs the ingest stage refuses.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import SimpleITK as sitk

ORTHONORMAL_TOLERANCE = 1e-4
"""Largest |D^T D - I| entry accepted for direction cosines (float32 headers carry ~1e-7 of noise)."""


class Reason(StrEnum):
    """Stable reason codes of a rejected input (the catalog stores the string value)."""

    UNREADABLE = "UNREADABLE"
    """Missing file, I/O error, or a file the reader cannot parse (corrupt header or data)."""
    UNKNOWN_FORMAT = "UNKNOWN_FORMAT"
    """No image reader recognises the file (extension or content)."""
    TRUNCATED = "TRUNCATED"
    """Fewer voxel bytes than the header promises, or a gzip stream that ends early or fails its CRC."""
    NON_FINITE = "NON_FINITE"
    """NaN or +-Inf voxels (SimpleITK silently turns them into 0 for NIfTI, so they are checked raw)."""
    NON_ORTHONORMAL_DIRECTION = "NON_ORTHONORMAL_DIRECTION"
    """Direction cosines (or a NIfTI sform) that are not orthonormal: sheared or scaled axes."""
    NOT_3D = "NOT_3D"
    """2D, 4D (time series, even of 2 frames), vector, RGB or complex images: one scalar 3D volume only."""
    OVER_MEMORY_BUDGET = "OVER_MEMORY_BUDGET"
    """The header says the float32 volume (native or resampled, the larger) exceeds memory_budget_mb."""
    AMBIGUOUS_SOURCE = "AMBIGUOUS_SOURCE"
    """x.nii beside x.nii.gz (or .hdr/.img): SimpleITK silently reads the other file."""
    EMPTY_VOLUME = "EMPTY_VOLUME"
    """An axis of size 0."""
    CONSTANT_VOLUME = "CONSTANT_VOLUME"
    """Every voxel has the same value (before or after the intensity policy)."""
    LABEL_NOT_INTEGER = "LABEL_NOT_INTEGER"
    """A label map with non-integer or negative values."""
    DICOM_MISSING_GEOMETRY = "DICOM_MISSING_GEOMETRY"
    """A slice lacks ImagePositionPatient, ImageOrientationPatient, PixelSpacing, Rows or Columns."""
    DICOM_MIXED_SLICE_SIZES = "DICOM_MIXED_SLICE_SIZES"
    """Slices of one series with different Rows/Columns or PixelSpacing."""
    DICOM_MIXED_ORIENTATION = "DICOM_MIXED_ORIENTATION"
    """Slices of one series with different ImageOrientationPatient (e.g. a localizer)."""
    DICOM_DUPLICATE_POSITIONS = "DICOM_DUPLICATE_POSITIONS"
    """Two slices at the same position along the slice normal."""
    DICOM_MISSING_SLICES = "DICOM_MISSING_SLICES"
    """A gap of a whole multiple of the usual slice step: one or more slices are missing."""
    DICOM_NONUNIFORM_SPACING = "DICOM_NONUNIFORM_SPACING"
    """Slice steps that differ by more than 1% (and are not a missing-slice gap)."""
    DICOM_GANTRY_TILT = "DICOM_GANTRY_TILT"
    """Slice positions that do not move along the slice normal (a tilted gantry: a sheared volume)."""
    INTERNAL_ERROR = "INTERNAL_ERROR"
    """An unexpected error while processing a validated volume (a bug: the message has the exception)."""


class VolumeRejected(Exception):
    """Raised inside the ingest code for bad input; turned into a `rejected` catalog row.

    Args:
        reason: the stable reason code.
        message: human-readable detail; it names the offending file.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = Reason(reason)
        self.message = message


def check_orthonormal(direction: tuple[float, ...] | list[float], name: str) -> None:
    """Refuse direction cosines (row-major 3x3, ITK convention) that are not orthonormal.

    Raises:
        VolumeRejected: NON_ORTHONORMAL_DIRECTION, with the matrix and `name` in the message.
    """
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    error = float(np.abs(matrix.T @ matrix - np.eye(3)).max())
    if not np.isfinite(error) or error > ORTHONORMAL_TOLERANCE:
        raise VolumeRejected(
            Reason.NON_ORTHONORMAL_DIRECTION,
            f"{name}: direction cosines {np.round(matrix, 6).tolist()} are not orthonormal "
            f"(max |D^T D - I| = {error:.3g} > {ORTHONORMAL_TOLERANCE})",
        )


def check_header_shape(dimension: int, size: tuple[int, ...], num_components: int, name: str) -> None:
    """Refuse anything but one scalar 3D volume, from header facts only (before reading pixels).

    A 4D size whose trailing axes are 1 is accepted (it is a 3D volume).

    Raises:
        VolumeRejected: NOT_3D or EMPTY_VOLUME.
    """
    if num_components != 1:
        raise VolumeRejected(
            Reason.NOT_3D, f"{name}: {num_components} components per voxel (vector/RGB/complex image)"
        )
    if dimension < 3 or any(s != 1 for s in size[3:]):
        raise VolumeRejected(Reason.NOT_3D, f"{name}: {dimension}D image of size {list(size)}")
    if any(s < 1 for s in size[:3]):
        raise VolumeRejected(Reason.EMPTY_VOLUME, f"{name}: empty image of size {list(size)}")


def validate_image(image: sitk.Image, name: str, is_label: bool = False) -> None:
    """Check a SimpleITK image read from an input before it is processed (ingest and Serve share this).

    Checks: scalar 3D (no vector/RGB/complex, no 2D/4D), non-empty, orthonormal direction, every voxel
    finite; images must not be constant; label maps must be integer-valued and non-negative.

    Args:
        image: the image as read (any pixel type).
        name: the input's name (file path or URI) for the message.
        is_label: apply the label-map checks instead of the image ones.

    Raises:
        VolumeRejected: with the first failing check's reason code.
    """
    pixel_type = image.GetPixelIDTypeAsString()
    if image.GetNumberOfComponentsPerPixel() != 1 or "complex" in pixel_type or "vector" in pixel_type:
        raise VolumeRejected(Reason.NOT_3D, f"{name}: pixel type {pixel_type!r} is not scalar")
    check_header_shape(image.GetDimension(), image.GetSize(), 1, name)
    check_orthonormal(image.GetDirection(), name)
    voxels = sitk.GetArrayViewFromImage(image)
    if voxels.dtype.kind == "f":
        num_bad = int(voxels.size - np.count_nonzero(np.isfinite(voxels)))
        if num_bad:
            raise VolumeRejected(Reason.NON_FINITE, f"{name}: {num_bad} NaN/Inf voxels")
    low, high = voxels.min(), voxels.max()
    if low == high and not is_label:  # an all-background label map is a valid (negative) example
        raise VolumeRejected(Reason.CONSTANT_VOLUME, f"{name}: every voxel is {low.item()}")
    if is_label:
        if voxels.dtype.kind == "f" and not np.array_equal(voxels, np.round(voxels)):
            raise VolumeRejected(Reason.LABEL_NOT_INTEGER, f"{name}: label map has non-integer values")
        if low < 0:
            raise VolumeRejected(Reason.LABEL_NOT_INTEGER, f"{name}: label map has negative value {low.item()}")
