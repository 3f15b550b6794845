"""Read one input safely: copy remote files locally, hash, check the header and budget, then the pixels.

Order matters: everything that can be decided from headers (format, ambiguity, shape, memory budget,
sheared sform, DICOM series geometry) is checked before any voxel is read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import fsspec
import SimpleITK as sitk

from med3dinsight.ingest import nifti_checks, raw_checks
from med3dinsight.ingest.dicom_series import scan_dicom_series
from med3dinsight.ingest.nifti_fallback import nifti_geometry_lps, read_nifti_with_nibabel
from med3dinsight.ingest.reasons import Reason, VolumeRejected, check_header_shape, validate_image
from med3dinsight.io.sources import Source
from med3dinsight.preprocess.geometry import reoriented_size_spacing, resampled_size

NIFTI_HEADERS = (".nii.gz", ".nii", ".hdr.gz", ".hdr")
"""Extensions the NIfTI reader substitutes for each other when several files share a stem."""


@dataclass(frozen=True, slots=True)
class ImageHeader:
    """What the header says, before pixels are read. ITK order: size/spacing/origin are (x, y, z)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    dicom_modality: str | None = None


def localize(source: Source, storage_options: dict[str, str], tmp_dir: str) -> dict[str, str]:
    """Local paths of the source's files, copying remote (fsspec URL) files into `tmp_dir`.

    Returns:
        {local path: original path or URL}, in the source's file order.

    Raises:
        VolumeRejected: UNREADABLE (missing file, copy failure), AMBIGUOUS_SOURCE.
    """
    if not source.files:
        raise VolumeRejected(Reason.UNREADABLE, f"{source.uri}: no files")
    local_to_original: dict[str, str] = {}
    for index, original in enumerate(source.files):
        protocol, _ = fsspec.core.split_protocol(original)
        try:
            fs = fsspec.filesystem(protocol or "file", **({} if protocol in (None, "file") else storage_options))
            if not fs.isfile(original):
                raise VolumeRejected(Reason.UNREADABLE, f"{original}: file does not exist")
            if source.kind == "file":
                _check_not_ambiguous(original, fs)
            if protocol in (None, "file"):
                local_to_original[os.path.abspath(original.removeprefix("file://"))] = original
                continue
            folder = os.path.join(tmp_dir, str(index))
            os.makedirs(folder)
            local = os.path.join(folder, os.path.basename(original.rstrip("/")))
            fs.get_file(original, local)
            local_to_original[local] = original
            if source.kind == "file" and (raw_checks.is_metaimage(local) or raw_checks.is_nrrd(local)):
                detached = raw_checks.detached_data_file(local)
                if detached is not None:
                    fs.get_file(f"{original.rsplit('/', 1)[0]}/{os.path.relpath(detached, folder)}", detached)
        except VolumeRejected:
            raise
        except (OSError, ValueError) as e:
            raise VolumeRejected(Reason.UNREADABLE, f"{original}: cannot be read ({e})") from None
    return local_to_original


def source_stamp(source: Source, storage_options: dict[str, str]) -> str | None:
    """sha256 of each file's (path, size, modification stamp) from file-system metadata, no bytes read.

    Local files give mtime_ns; object stores their ETag (else LastModified). None when any file cannot
    be stat'ed or has no stamp; the caller then reads and hashes the bytes as usual. Like make and
    rsync, a rewrite that keeps size and mtime goes unnoticed; the content hash stays the identity.
    """
    stamps = []
    for path in source.files:
        protocol, _ = fsspec.core.split_protocol(path)
        try:
            if protocol in (None, "file"):
                stat = os.stat(path.removeprefix("file://"))
                stamps.append([path, stat.st_size, stat.st_mtime_ns])
                continue
            info = fsspec.filesystem(protocol, **storage_options).info(path)
        except (OSError, ValueError):
            return None
        stamp = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime")
        if stamp is None:
            return None
        stamps.append([path, info.get("size"), str(stamp)])
    return hashlib.sha256(json.dumps(stamps).encode()).hexdigest()


def files_sha256(paths: list[str]) -> str:
    """sha256 of one file's bytes; for several files (a DICOM series) the sha256 of their sorted hashes."""
    digests = []
    for path in paths:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 22):
                digest.update(block)
        digests.append(digest.hexdigest())
    if len(digests) == 1:
        return digests[0]
    return hashlib.sha256("\n".join(sorted(digests)).encode()).hexdigest()


def read_checked_image(
    files: list[str], kind: str, name: str, orientation: str, target_spacing: list[float] | None,
    memory_budget_mb: float, is_label: bool = False, scratch_dir: str | None = None,
) -> tuple[sitk.Image, ImageHeader]:  # fmt: skip
    """Read one input after every header check, then validate its voxels.

    Args:
        files: local paths (one image file, or the files of one DICOM series).
        kind: "file" or "dicom".
        name: the source URI for messages.
        orientation, target_spacing: the preprocessing that will follow (for the memory estimate).
        memory_budget_mb: refuse a volume whose float32 voxels, native or resampled, exceed this.
        is_label: validate as a label map.
        scratch_dir: a private temporary folder; a .nii.gz is then inflated once, by the integrity scan,
            into a plain .nii there that SimpleITK reads (instead of inflating it a second time).

    Returns:
        The image (scalar 3D, native geometry and pixel type) and its header.

    Raises:
        VolumeRejected: any reason code of `Reason` that applies to reading.
    """
    path = files[0]
    layout, via_nibabel = None, False
    if kind == "dicom":
        series = scan_dicom_series(files, name)
        files = series.files
        if series.num_frames > 1:
            header = _header_from_sitk(path, name)
        else:
            header = ImageHeader(series.size, series.spacing, series.origin, series.direction)
        header = ImageHeader(header.size, header.spacing, header.origin, header.direction, series.modality)
    else:
        layout = nifti_checks.check_nifti_header(path) if nifti_checks.is_nifti(path) else None
        try:
            header = _header_from_sitk(path, name)
        except VolumeRejected as e:
            if layout is None or e.reason != Reason.UNKNOWN_FORMAT:
                raise
            size, spacing, origin, direction = nifti_geometry_lps(path)
            check_header_shape(len(size), size, 1, name)
            header, via_nibabel = ImageHeader(size[:3], tuple(spacing), tuple(origin), tuple(direction)), True
    _check_memory_budget(header, orientation, target_spacing, memory_budget_mb, name)
    inflated = None
    if layout is not None and scratch_dir is not None and not via_nibabel and path.lower().endswith(".nii.gz"):
        inflated = os.path.join(scratch_dir, "inflated.nii")
    try:
        if kind == "file":
            if layout is not None:
                nifti_checks.scan_nifti_data(path, layout, inflate_to=inflated)
            elif raw_checks.is_metaimage(path) or raw_checks.is_nrrd(path):
                raw_checks.check_raw_size(path)
        if via_nibabel:
            image = read_nifti_with_nibabel(path)
        else:
            image = _read_pixels([inflated] if inflated else files, kind, name)
    finally:
        if inflated is not None and os.path.exists(inflated):
            os.remove(inflated)
    if image.GetDimension() == 4:  # a 4D header with one frame (checked above): keep the 3D volume
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    validate_image(image, name, is_label=is_label)
    return image, header


def _header_from_sitk(path: str, name: str) -> ImageHeader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise _reader_error(e, name) from None
    check_header_shape(reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents(), name)
    if "complex" in sitk.GetPixelIDValueAsString(reader.GetPixelID()):
        raise VolumeRejected(Reason.NOT_3D, f"{name}: complex voxels")
    dims = slice(0, 3)
    direction = reader.GetDirection()
    if reader.GetDimension() > 3:  # keep the spatial 3x3 block of an N-D direction
        n = reader.GetDimension()
        direction = tuple(direction[r * n + c] for r in range(3) for c in range(3))
    return ImageHeader(reader.GetSize()[dims], reader.GetSpacing()[dims], reader.GetOrigin()[dims], direction)


def _check_memory_budget(
    header: ImageHeader, orientation: str, target_spacing: list[float] | None, budget_mb: float, name: str
) -> None:
    num_voxels = _prod(header.size)
    if target_spacing is not None:
        size, spacing = reoriented_size_spacing(header.size, header.spacing, header.direction, orientation)
        num_voxels = max(num_voxels, _prod(resampled_size(size, spacing, target_spacing)))
    needed_mb = num_voxels * 4 / 2**20
    if needed_mb > budget_mb:
        raise VolumeRejected(
            Reason.OVER_MEMORY_BUDGET,
            f"{name}: {list(header.size)} voxels need {needed_mb:.1f} MB as float32 "
            f"(memory_budget_mb = {budget_mb})",
        )


def _read_pixels(files: list[str], kind: str, name: str) -> sitk.Image:
    try:
        if kind == "dicom" and len(files) > 1:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(files)
            return reader.Execute()
        return sitk.ReadImage(files[0])
    except RuntimeError as e:
        raise _reader_error(e, name) from None


def _reader_error(error: RuntimeError, name: str) -> VolumeRejected:
    text = str(error)
    detail = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
    if "Unable to determine ImageIO reader" in text:
        return VolumeRejected(Reason.UNKNOWN_FORMAT, f"{name}: no image reader recognises this file")
    if "orthonormal" in text:
        return VolumeRejected(Reason.NON_ORTHONORMAL_DIRECTION, f"{name}: {detail}")
    return VolumeRejected(Reason.UNREADABLE, f"{name}: {detail}")


def _check_not_ambiguous(path: str, fs: fsspec.AbstractFileSystem) -> None:
    lower = path.lower()
    extension = next((e for e in NIFTI_HEADERS if lower.endswith(e)), None)
    if extension is None:
        return
    stem = path[: -len(extension)]
    others = [stem + e for e in NIFTI_HEADERS if e != extension and fs.exists(stem + e)]
    if others:
        raise VolumeRejected(
            Reason.AMBIGUOUS_SOURCE,
            f"{path}: {', '.join(others)} share its name; the NIfTI reader may read either file",
        )


def _prod(values: tuple[int, ...] | list[int]) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result
