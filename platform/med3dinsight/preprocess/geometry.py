"""Geometry steps of preprocessing: reorient (permute/flip only) and resample to a target spacing.

ITK conventions throughout: sizes, spacings and origins are (x, y, z); physical points are LPS mm;
direction is the row-major 3x3 matrix whose columns are the image axes in physical space.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

# Physical axis (0=x, 1=y, 2=z) and sign of each letter in ITK's LPS world, where +x=L, +y=P, +z=S.
LETTER_AXIS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


def reoriented_size_spacing(
    size: Sequence[int], spacing: Sequence[float], direction: Sequence[float], orientation: str
) -> tuple[list[int], list[float]]:
    """Size and spacing (x, y, z) an image will have after `reorient`, from header values only.

    Args:
        size: native size (x, y, z) in voxels.
        spacing: native spacing (x, y, z) in mm.
        direction: native direction, 9 floats row-major.
        orientation: target code such as "LPS".
    """
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    physical_axis_of_image_axis = np.abs(matrix).argmax(axis=0).tolist()
    if sorted(physical_axis_of_image_axis) != [0, 1, 2]:  # 45-degree obliques: keep the order (estimate)
        return [int(n) for n in size], [float(s) for s in spacing]
    image_axes = [physical_axis_of_image_axis.index(LETTER_AXIS[letter][0]) for letter in orientation]
    return [int(size[a]) for a in image_axes], [float(spacing[a]) for a in image_axes]


def resampled_size(size: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]) -> list[int]:
    """Voxels per axis (x, y, z) that cover the same physical extent at `target_spacing` (at least 1)."""
    return [max(1, round(n * s / t)) for n, s, t in zip(size, spacing, target_spacing, strict=True)]


def reorient(image: sitk.Image, orientation: str) -> sitk.Image:
    """Permute and flip voxel axes so that they point towards `orientation` (e.g. "LPS"); no interpolation.

    "LPS" means +i towards Left, +j towards Posterior, +k towards Superior: an identity direction for an
    axis-aligned image (DICOM convention, as `sitk.DICOMOrient`). An oblique image gets the closest axes
    and keeps its obliqueness in the direction matrix. Voxel values and physical positions are unchanged.
    """
    return sitk.DICOMOrient(image, orientation)


def resample_to_spacing(
    image: sitk.Image, target_spacing: Sequence[float], is_label: bool, default_value: float
) -> sitk.Image:
    """Resample onto a grid of `target_spacing` mm covering the same physical extent, same direction.

    The new grid is centred on the old one: both share the centre of the voxel-edge box, and the new size
    is round(extent / target_spacing), so the extent changes by less than one target voxel per axis.

    Args:
        image: 3D scalar image (any pixel type; images are resampled in float32).
        target_spacing: (x, y, z) in mm.
        is_label: nearest-neighbour and the input pixel type (label maps); else linear in float32.
        default_value: value of voxels whose centre falls outside the input.

    Returns:
        The resampled image (float32 for images, input type for labels).
    """
    size, spacing = image.GetSize(), image.GetSpacing()
    new_size = resampled_size(size, spacing, target_spacing)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size]))
    half_new = np.asarray(target_spacing, dtype=np.float64) * (np.asarray(new_size) - 1) / 2
    new_origin = centre - direction @ half_new
    if not is_label:
        image = sitk.Cast(image, sitk.sitkFloat32)
    return sitk.Resample(
        image,
        [int(n) for n in new_size],
        sitk.Transform(),
        sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear,
        new_origin.tolist(),
        [float(t) for t in target_spacing],
        image.GetDirection(),
        float(default_value),
        image.GetPixelID(),
    )


def physical_extent(image: sitk.Image) -> list[float]:
    """Voxel-edge extent (x, y, z) in mm: size * spacing."""
    return [n * s for n, s in zip(image.GetSize(), image.GetSpacing(), strict=True)]
