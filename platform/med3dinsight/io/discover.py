"""Turn an ingest `input` (file, folder, glob, list file, fsspec URL) into `Source`s.

DICOM files are grouped by SeriesInstanceUID (a folder holding several series yields several sources)
and each series' files are sorted along the slice normal. Files with an unrecognised extension are kept
as sources so that ingest rejects them with a named reason instead of dropping them silently.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import fsspec
import numpy as np

from med3dinsight.io.sources import Source

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
# Files that sit beside volumes but are not volumes themselves (MetaImage raw data, BIDS sidecars, ...).
SIDECAR_SUFFIXES = (".raw", ".zraw", ".json", ".txt", ".csv", ".tsv", ".md", ".bval", ".bvec", ".yaml", ".yml")
GLOB_CHARS = "*?["


def discover_sources(input_spec: str, options: dict[str, Any] | None = None) -> list[Source]:
    """List the volumes named by `input_spec`.

    Args:
        input_spec: a file, a folder (searched recursively), a glob, a `.txt` file listing one input per
            line (blank lines and `#` comments skipped), or any of these as an fsspec URL (s3://...).
        options: fsspec storage options for URLs.

    Returns:
        Sources sorted by uri, one per image file and one per DICOM series.

    Raises:
        ValueError: when `input_spec` names nothing that exists.
    """
    fs, path = fsspec.core.url_to_fs(input_spec, **(options or {}))
    protocol = _protocol(input_spec)
    files: list[str] = []
    if any(c in path for c in GLOB_CHARS):
        matched = sorted(fs.glob(path))
        if not matched:
            raise ValueError(f"input glob {input_spec!r} matched nothing")
        for m in matched:
            files.extend(_walk(fs, m))
    elif not fs.exists(path):
        raise ValueError(f"input {input_spec!r} does not exist")
    elif fs.isfile(path) and path.endswith(".txt"):
        with fs.open(path, "r") as f:
            lines = [ln.strip() for ln in f.read().splitlines()]
        sources: list[Source] = []
        for line in lines:
            if line and not line.startswith("#"):
                sources.extend(discover_sources(line, options))
        return _unique(sources)
    else:
        files = _walk(fs, path)
    return _unique(_group(fs, protocol, files))


def _protocol(url: str) -> str | None:
    protocol, _ = fsspec.core.split_protocol(url)
    return None if protocol in (None, "file") else protocol


def _walk(fs: fsspec.AbstractFileSystem, path: str) -> list[str]:
    if fs.isfile(path):
        return [path]
    found = [p for p in fs.find(path) if not _name(p).startswith(".")]
    return sorted(found)


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _is_dicom(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    lower = path.lower()
    if lower.endswith(DICOM_SUFFIXES):
        return True
    if "." in _name(path):
        return False
    with fs.open(path, "rb") as f:  # extensionless DICOM: preamble then the "DICM" magic
        head = f.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _group(fs: fsspec.AbstractFileSystem, protocol: str | None, files: list[str]) -> list[Source]:
    sources: list[Source] = []
    dicom: list[str] = []
    for path in files:
        lower = path.lower()
        if lower.endswith(IMAGE_SUFFIXES):
            sources.append(Source(uri=_uri(protocol, path), kind="file", files=[_uri(protocol, path)]))
        elif _is_dicom(fs, path):
            dicom.append(path)
        elif lower.endswith(SIDECAR_SUFFIXES):
            continue
        else:
            sources.append(Source(uri=_uri(protocol, path), kind="file", files=[_uri(protocol, path)]))
    sources.extend(_group_dicom(fs, protocol, dicom))
    return sources


def _group_dicom(fs: fsspec.AbstractFileSystem, protocol: str | None, files: list[str]) -> list[Source]:
    import pydicom

    series: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
    unreadable: list[str] = []
    for path in files:
        try:
            with fs.open(path, "rb") as f:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception as e:  # not parseable as DICOM: ingest rejects it with a reason
            log.debug("cannot parse %s as DICOM: %s", path, e)
            unreadable.append(path)
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or "unknown-series")
        folder = path.rsplit("/", 1)[0]
        series[(folder, uid)].append((_slice_position(ds), path))
    out = [Source(uri=_uri(protocol, p), kind="file", files=[_uri(protocol, p)]) for p in unreadable]
    for (folder, uid), items in series.items():
        items.sort()
        out.append(
            Source(
                uri=f"{_uri(protocol, folder)}#{uid}",
                kind="dicom",
                files=[_uri(protocol, p) for _, p in items],
                series_uid=uid,
            )
        )
    return out


def _slice_position(ds: Any) -> float:
    """Position along the slice normal (mm), for sorting; falls back to InstanceNumber."""
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient])
        return float(np.dot(np.cross(iop[:3], iop[3:]), ipp))
    except (AttributeError, TypeError, ValueError):
        return float(getattr(ds, "InstanceNumber", 0) or 0)


def _uri(protocol: str | None, path: str) -> str:
    return path if protocol is None else f"{protocol}://{path}"


def _unique(sources: list[Source]) -> list[Source]:
    by_uri = {s.uri: s for s in sources}
    return [by_uri[k] for k in sorted(by_uri)]
