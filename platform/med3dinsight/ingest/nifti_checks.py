"""NIfTI checks that SimpleITK cannot do: it zero-fills truncated files and turns NaN/Inf into 0.

`check_nifti_header` reads only the header (before the memory-budget check); `scan_nifti_data` streams
the voxel bytes once, in bounded memory, checking the gzip stream, the byte count and finiteness.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from med3dinsight.ingest.reasons import Reason, VolumeRejected, check_orthonormal

CHUNK_BYTES = 1 << 24


@dataclass(frozen=True, slots=True)
class NiftiLayout:
    """Where the voxels are and what they look like, from the header."""

    vox_offset: int
    num_voxels: int
    dtype: np.dtype

    @property
    def num_bytes(self) -> int:
        return self.num_voxels * self.dtype.itemsize


def is_nifti(path: str) -> bool:
    return path.lower().endswith((".nii", ".nii.gz"))


def check_nifti_header(path: str) -> NiftiLayout:
    """Parse the NIfTI-1/2 header and refuse a sheared sform (ITK only raises an opaque error for it).

    Args:
        path: a local .nii or .nii.gz file.

    Returns:
        The voxel layout, used by `scan_nifti_data`.

    Raises:
        VolumeRejected: UNREADABLE (not a NIfTI header), NOT_3D (4D, 2D, complex or RGB voxels),
            NON_ORTHONORMAL_DIRECTION (sform with shear).
    """
    try:
        image = nib.load(path)
        header = image.header
    except Exception as e:  # nibabel raises many types for a bad header; all mean "cannot parse"
        raise VolumeRejected(Reason.UNREADABLE, f"{path}: not a readable NIfTI header ({e})") from None
    ndim = int(header["dim"][0])
    shape = [int(d) for d in header["dim"][1 : ndim + 1]]
    dtype = header.get_data_dtype()
    if ndim < 3 or any(n != 1 for n in shape[3:]) or dtype.kind == "c" or dtype.fields is not None:
        raise VolumeRejected(Reason.NOT_3D, f"{path}: {ndim}D image of shape {shape}, voxel type {dtype}")
    if int(header["sform_code"]) > 0:
        # ITK prefers the sform; nibabel's qform is orthonormal by construction.
        matrix = np.asarray(header.get_sform(), dtype=np.float64)[:3, :3]
        with np.errstate(divide="ignore", invalid="ignore"):
            direction = matrix / np.linalg.norm(matrix, axis=0)
        check_orthonormal(direction.ravel().tolist(), f"{path} (sform)")
    num_voxels = int(np.prod(shape, dtype=np.int64))
    # nibabel zeroes the in-memory vox_offset of loaded NIfTI-2 headers; the array proxy has the real one.
    return NiftiLayout(int(image.dataobj.offset), num_voxels, dtype)


def scan_nifti_data(path: str, layout: NiftiLayout, inflate_to: str | None = None) -> None:
    """Stream the voxel bytes once: complete gzip stream with a good CRC, enough bytes, no NaN/Inf.

    Args:
        path: the .nii / .nii.gz file.
        layout: from `check_nifti_header`.
        inflate_to: if given, also write the header and voxel bytes there as a plain .nii file, so the
            pixels can be read without inflating the gzip stream a second time.

    Raises:
        VolumeRejected: TRUNCATED, UNREADABLE (corrupt gzip data), NON_FINITE (float voxels).
    """
    check_finite = layout.dtype.kind == "f"
    num_read = num_bad = 0
    itemsize = layout.dtype.itemsize
    carry = b""
    try:
        with _open(path) as f, open(inflate_to, "wb") if inflate_to else contextlib.nullcontext() as out:
            if out is None:
                f.seek(layout.vox_offset)
            else:
                out.write(f.read(layout.vox_offset))
            while num_read < layout.num_bytes:
                chunk = f.read(min(CHUNK_BYTES, layout.num_bytes - num_read))
                if not chunk:
                    break
                num_read += len(chunk)
                if out is not None:
                    out.write(chunk)
                if check_finite:
                    data = carry + chunk
                    usable = len(data) - len(data) % itemsize
                    values = np.frombuffer(data[:usable], dtype=layout.dtype)
                    num_bad += int(values.size - np.count_nonzero(np.isfinite(values)))
                    carry = data[usable:]
            while f.read(CHUNK_BYTES):  # gzip verifies the CRC and length only at the end of the stream
                pass
    except EOFError:
        raise VolumeRejected(Reason.TRUNCATED, f"{path}: gzip stream ends early (truncated file)") from None
    except (gzip.BadGzipFile, zlib.error, OSError) as e:
        raise VolumeRejected(Reason.UNREADABLE, f"{path}: corrupt data ({e})") from None
    if num_read < layout.num_bytes:
        raise VolumeRejected(
            Reason.TRUNCATED,
            f"{path}: {num_read} voxel bytes, header promises {layout.num_bytes} (truncated file)",
        )
    if num_bad:
        raise VolumeRejected(Reason.NON_FINITE, f"{path}: {num_bad} NaN/Inf voxels")


def _open(path: str):
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")
