"""Read NIfTI files that SimpleITK refuses (SimpleITK 2.5 does not open nibabel-written NIfTI-2) via nibabel.

The geometry is converted from nibabel's RAS affine to ITK's LPS convention: the same physical points,
the same voxel order. Only used after `nifti_checks` accepted the header and the data bytes.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from med3dinsight.ingest.reasons import Reason, VolumeRejected

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def nifti_geometry_lps(path: str) -> tuple[tuple[int, ...], list[float], list[float], list[float]]:
    """(size x,y,z[,...], spacing x,y,z mm, origin x,y,z LPS mm, direction row-major) from the header."""
    image = nib.load(path)
    affine = RAS_TO_LPS @ np.asarray(image.affine, dtype=np.float64)[:3]
    spacing = np.linalg.norm(affine[:, :3], axis=0)
    direction = affine[:, :3] / spacing
    return tuple(int(n) for n in image.shape), spacing.tolist(), affine[:, 3].tolist(), direction.ravel().tolist()


def read_nifti_with_nibabel(path: str) -> sitk.Image:
    """The 3D scalar NIfTI at `path` as a SimpleITK image in ITK geometry (nibabel applies the scaling).

    Raises:
        VolumeRejected: NOT_3D for more than three non-trivial axes.
    """
    image = nib.load(path)
    voxels_xyz = np.asanyarray(image.dataobj)
    if voxels_xyz.ndim > 3:
        if any(n != 1 for n in voxels_xyz.shape[3:]):
            raise VolumeRejected(Reason.NOT_3D, f"{path}: {voxels_xyz.ndim}D image of shape {voxels_xyz.shape}")
        voxels_xyz = voxels_xyz.reshape(voxels_xyz.shape[:3])
    if voxels_xyz.ndim != 3:
        raise VolumeRejected(Reason.NOT_3D, f"{path}: {voxels_xyz.ndim}D image of shape {voxels_xyz.shape}")
    native = voxels_xyz.dtype.newbyteorder("=")
    result = sitk.GetImageFromArray(np.ascontiguousarray(voxels_xyz.transpose(2, 1, 0), dtype=native))
    _, spacing, origin, direction = nifti_geometry_lps(path)
    result.SetSpacing(spacing)
    result.SetOrigin(origin)
    result.SetDirection(direction)
    return result
