"""Byte-size checks of MetaImage (.mha/.mhd) and NRRD (.nrrd/.nhdr) voxel data, which ITK zero-fills.

Only the encodings whose size is knowable are checked (raw, zlib/gzip); others are left to the reader.
`detached_data_file` names the separate voxel file of a .mhd/.nhdr header, so a remote input can be
copied together with it.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from med3dinsight.ingest.reasons import Reason, VolumeRejected

METAIMAGE_TYPE_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}  # fmt: skip
NRRD_TYPE_BYTES = {
    **dict.fromkeys(["signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t", "char"], 1),
    **dict.fromkeys(["short", "short int", "signed short", "signed short int", "int16", "int16_t"], 2),
    **dict.fromkeys(["ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"], 2),
    **dict.fromkeys(["int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t"], 4),
    **dict.fromkeys(["longlong", "long long", "int64", "int64_t", "ulonglong", "uint64", "uint64_t"], 8),
    "float": 4, "double": 8,
}  # fmt: skip
MAX_HEADER_BYTES = 1 << 16


def is_metaimage(path: str) -> bool:
    return path.lower().endswith((".mha", ".mhd"))


def is_nrrd(path: str) -> bool:
    return path.lower().endswith((".nrrd", ".nhdr"))


def detached_data_file(path: str) -> str | None:
    """The voxel file named by a .mhd/.nhdr header (relative to the header's folder), else None."""
    fields, _ = _read_header(path)
    name = fields.get("elementdatafile") if is_metaimage(path) else fields.get("data file", fields.get("datafile"))
    if not name or name.upper() in ("LOCAL", "LIST") or "%" in name:
        return None
    return os.path.join(os.path.dirname(path), name)


def check_raw_size(path: str) -> None:
    """Refuse a MetaImage/NRRD file whose voxel data is shorter than its header promises.

    Raises:
        VolumeRejected: TRUNCATED, or UNREADABLE for a corrupt compressed stream or a missing data file.
    """
    fields, data_offset = _read_header(path)
    if is_metaimage(path):
        sizes, type_bytes = fields.get("dimsize", ""), METAIMAGE_TYPE_BYTES.get(fields.get("elementtype", ""))
        channels = int(fields.get("elementnumberofchannels", "1"))
        compressed = fields.get("compresseddata", "false").lower() == "true"
        encoding = "zlib" if compressed else "raw"
        data_name, skip = fields.get("elementdatafile", ""), int(fields.get("headersize", "0"))
    else:
        sizes, type_bytes, channels = fields.get("sizes", ""), NRRD_TYPE_BYTES.get(fields.get("type", "")), 1
        encoding = {"gz": "gzip", "gzip": "gzip", "raw": "raw"}.get(fields.get("encoding", ""), "other")
        data_name = fields.get("data file", fields.get("datafile", "LOCAL"))
        skip = int(fields.get("byte skip", fields.get("byteskip", "0")))
    if type_bytes is None or encoding == "other" or skip < 0 or not sizes:
        return
    expected = int(np.prod([int(s) for s in sizes.split()], dtype=np.int64)) * type_bytes * channels
    if data_name.upper() in ("", "LOCAL"):
        data_path, offset = path, data_offset + (skip if encoding == "raw" else 0)
    else:
        data_path, offset = detached_data_file(path), skip if encoding == "raw" else 0
        if data_path is None:
            return
        if not os.path.isfile(data_path):
            raise VolumeRejected(Reason.UNREADABLE, f"{path}: data file {data_path} does not exist")
    if encoding == "raw":
        available = os.path.getsize(data_path) - offset
    else:
        available = _decompressed_size(data_path, offset, encoding, expected)
    if available < expected:
        raise VolumeRejected(
            Reason.TRUNCATED, f"{path}: {available} voxel bytes, header promises {expected} (truncated file)"
        )


def _read_header(path: str) -> tuple[dict[str, str], int]:
    """Header fields (keys lower-cased) and the byte offset where attached data starts."""
    with open(path, "rb") as f:
        head = f.read(MAX_HEADER_BYTES)
    fields: dict[str, str] = {}
    offset = 0
    metaimage = is_metaimage(path)
    for raw_line in head.splitlines(keepends=True):
        offset += len(raw_line)
        line = raw_line.decode("latin-1").strip()
        if metaimage:
            key, sep, value = line.partition("=")
            if sep:
                fields[key.strip().lower()] = value.strip()
            if key.strip().lower() == "elementdatafile":
                break
        else:
            if not line:
                break
            key, sep, value = line.partition(":")
            if sep and not line.startswith("#"):
                fields[key.strip().lower()] = value.lstrip("=").strip()
    return fields, offset


def _decompressed_size(path: str, offset: int, encoding: str, limit: int) -> int:
    """Bytes a zlib/gzip stream at `offset` inflates to (stops counting past `limit`)."""
    wbits = zlib.MAX_WBITS | 16 if encoding == "gzip" else zlib.MAX_WBITS | 32
    inflater = zlib.decompressobj(wbits)
    total = 0
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while total <= limit and (block := f.read(1 << 22)):
                total += len(inflater.decompress(block, max(1, limit + 1 - total)))
                while inflater.unconsumed_tail and total <= limit:
                    total += len(inflater.decompress(inflater.unconsumed_tail, max(1, limit + 1 - total)))
    except (zlib.error, gzip.BadGzipFile) as e:
        raise VolumeRejected(Reason.UNREADABLE, f"{path}: corrupt compressed data ({e})") from None
    return total
