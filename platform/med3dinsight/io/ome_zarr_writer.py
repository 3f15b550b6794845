"""Write one volume as an OME-Zarr 0.5 multiscale image (zarr v3) and publish it atomically.

Layout of `<volume_id>.ome.zarr`: arrays "0", "1", ... (level i is 2^i times coarser, axes z, y, x), and
the root group's zarr.json holding the OME `multiscales` and the namespaced attribute NAMESPACE, whose
`complete: true` is the completion marker readers require.

Publication: on a local store everything is written into a hidden directory beside the destination and
renamed into place (atomic on one filesystem). On an object store there is no rename: the arrays are
written first and the root zarr.json (metadata + marker) last, so a crash leaves a group without
metadata, which `read_volume_attrs` and the reader refuse, and which the next run overwrites.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle, ZstdCodec

from med3dinsight.config.ingest import CODEC_LEVELS, ZarrConfig
from med3dinsight.io.store import Store

NAMESPACE = "med3dinsight"
FORMAT_VERSION = 1
"""Version of the layout of the NAMESPACE attribute (bump when readers must tell layouts apart)."""
PCODEC_PAGE_VALUES = 32768
"""pcodec fits its model per page of this many values (8 slices of a 64^3 chunk): smaller pages adapt to
the background/tissue mix and to zarr's constant edge padding (bench/ingest.py: 0.906 -> 0.847 of
.nii.gz on the CT phantom, where a single 262144-value page spent ~2.5 bits per padded voxel)."""
MIN_LEVEL_AXIS = 8
"""Extra pyramid levels stop once an axis would drop below this (the first two levels always exist)."""


def pyramid_level_count(shape_zyx: Sequence[int], configured_levels: int) -> int:
    """Levels to write: up to `configured_levels`, stopping when an axis would drop below MIN_LEVEL_AXIS."""
    count = 2
    while count < configured_levels and all(-(-n // 2**count) >= MIN_LEVEL_AXIS for n in shape_zyx):
        count += 1
    return count


def downsample(voxels_zyx: np.ndarray, is_label: bool) -> np.ndarray:
    """One 2x pyramid step: mean of 2x2x2 blocks (edge-replicated at odd sizes) for images, a stride-2
    pick for label maps (labels must not be averaged). Shape ceil(n / 2) per axis, same dtype."""
    if is_label:
        return np.ascontiguousarray(voxels_zyx[::2, ::2, ::2])
    pad = [(0, n % 2) for n in voxels_zyx.shape]
    even = np.pad(voxels_zyx, pad, mode="edge") if any(p for _, p in pad) else voxels_zyx
    z, y, x = (n // 2 for n in even.shape)
    is_int = np.issubdtype(voxels_zyx.dtype, np.integer)
    # A sum of 8 values of <= 16-bit integers is exact in float32 and /8 is exact in binary, so float32
    # gives the float64 result; pairwise adds over the three axes are ~5x faster than .mean(axis=...).
    acc = np.float32 if is_int and voxels_zyx.dtype.itemsize <= 2 else np.float64
    blocks = even.astype(acc).reshape(z, 2, y, 2, x, 2)
    pairs = blocks[:, 0] + blocks[:, 1]
    pairs = pairs[:, :, 0] + pairs[:, :, 1]
    mean = (pairs[..., 0] + pairs[..., 1]) / 8
    if is_int:
        mean = np.rint(mean)
    return mean.astype(voxels_zyx.dtype)


def level_transform(
    spacing_zyx: Sequence[float], origin_zyx: Sequence[float], level: int, is_label: bool
) -> tuple[list[float], list[float]]:
    """OME scale and translation (z, y, x, mm) of pyramid `level`.

    The centre of voxel 0 of a block-mean level is the mean of the centres of the 2^level voxels it
    averages: origin + spacing * (2^level - 1) / 2. A stride pick keeps voxel 0, so labels keep the origin.
    """
    factor = 2**level
    scale = [float(s) * factor for s in spacing_zyx]
    shift = 0.0 if is_label else (factor - 1) / 2
    translation = [float(o) + float(s) * shift for o, s in zip(origin_zyx, spacing_zyx, strict=True)]
    return scale, translation


def multiscales_metadata(
    name: str, num_levels: int, spacing_zyx: Sequence[float], origin_zyx: Sequence[float], is_label: bool
) -> dict[str, Any]:
    """The OME-Zarr 0.5 `ome` attribute: one multiscale, axes z, y, x in millimeter."""
    datasets = []
    for level in range(num_levels):
        scale, translation = level_transform(spacing_zyx, origin_zyx, level, is_label)
        datasets.append({
            "path": str(level),
            "coordinateTransformations": [
                {"type": "scale", "scale": scale},
                {"type": "translation", "translation": translation},
            ],
        })  # fmt: skip
    return {
        "version": "0.5",
        "multiscales": [{
            "name": name,
            "axes": [{"name": a, "type": "space", "unit": "millimeter"} for a in ("z", "y", "x")],
            "datasets": datasets,
            "type": "stride-2 pick" if is_label else "2x2x2 mean",
        }],
    }  # fmt: skip


def codecs(cfg: ZarrConfig, dtype: np.dtype) -> dict[str, Any]:
    """zarr.create_array's `serializer` and `compressors` for `cfg.codec` and the array's dtype.

    pcodec models numeric distributions (bench/ingest.py: ~7% smaller than Blosc on noisy CT) but
    refuses 8-bit types; label maps are long runs of a few values, which Blosc-zstd codes best anyway.
    """
    codec = cfg.codec
    if codec == "pcodec" and np.dtype(dtype).itemsize == 1:
        codec = "blosc-zstd"
    level = CODEC_LEVELS[codec][2] if codec != cfg.codec else cfg.level
    if codec == "pcodec":
        from numcodecs.zarr3 import PCodec

        return {"serializer": PCodec(level=level, equal_pages_up_to=PCODEC_PAGE_VALUES), "compressors": None}
    if codec.startswith("blosc-"):
        blosc = BloscCodec(cname=codec.removeprefix("blosc-"), clevel=level, shuffle=BloscShuffle.shuffle)
        return {"compressors": [blosc]}
    if codec == "zstd":
        return {"compressors": [ZstdCodec(level=level)]}
    return {"compressors": None}


@contextlib.contextmanager
def quiet_numcodecs_warning() -> Iterator[None]:
    """Silence zarr's "Numcodecs codecs are not in the Zarr version 3 specification" for pcodec arrays.

    zarr warns each time such an array is created or opened; the choice and what it means for other
    zarr implementations is documented once, in storage/README.md.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr version 3 specification")
        yield


def read_volume_attrs(store: Store, path: str) -> dict[str, Any] | None:
    """The NAMESPACE attribute of a complete volume at `path`, or None (absent or incomplete)."""
    try:
        metadata = json.loads(store.fs.cat_file(f"{path}/zarr.json"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    attrs = metadata.get("attributes", {}).get(NAMESPACE)
    return attrs if isinstance(attrs, dict) and attrs.get("complete") is True else None


def write_ome_zarr(
    store: Store, path: str, levels_zyx: list[np.ndarray], ome: dict[str, Any], attrs: dict[str, Any],
    cfg: ZarrConfig,
) -> bool:  # fmt: skip
    """Write the pyramid and metadata at `path` and publish it atomically (see the module docstring).

    Args:
        store: the store holding `path`.
        path: destination `<root>/volumes/<volume_id>.ome.zarr`.
        levels_zyx: level arrays, level 0 first, each (z, y, x).
        ome: the `ome` attribute (`multiscales_metadata`).
        attrs: the NAMESPACE attribute; `complete: true` is added.
        cfg: chunk shape (clipped to each level) and codec.

    Returns:
        True if this call published the volume, False if a concurrent writer published it first.
    """
    group_attrs = {"ome": ome, NAMESPACE: {**attrs, "complete": True}}
    if not store.is_local:
        _write_arrays_then_group(store, path, levels_zyx, group_attrs, cfg)
        return True
    parent, base = os.path.split(path)
    staging = os.path.join(parent, f".{base}.writing-{uuid.uuid4().hex[:8]}")
    try:
        _write_arrays_then_group(store, staging, levels_zyx, group_attrs, cfg)
        if os.path.exists(path):  # an incomplete leftover of an interrupted write (complete ones are skipped)
            if read_volume_attrs(store, path) is not None:
                return False
            shutil.rmtree(path)
        try:
            os.rename(staging, path)
        except OSError:
            if read_volume_attrs(store, path) is not None:  # a concurrent writer of the same content won
                return False
            raise
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_arrays_then_group(
    store: Store, path: str, levels_zyx: list[np.ndarray], group_attrs: dict[str, Any], cfg: ZarrConfig
) -> None:
    background = group_attrs[NAMESPACE].get("background", 0)
    for level, voxels in enumerate(levels_zyx):
        write_level(store, f"{path}/{level}", voxels, cfg, background)
    # Written by hand, last: zarr's create_group(overwrite=True) would delete the arrays beneath it.
    metadata = {"zarr_format": 3, "node_type": "group", "attributes": group_attrs}
    store.fs.pipe_file(f"{path}/zarr.json", json.dumps(metadata, indent=2, allow_nan=False).encode())


def write_level(store: Store, path: str, voxels_zyx: np.ndarray, cfg: ZarrConfig, fill_value: float = 0) -> None:
    """Write one pyramid level as a zarr v3 array with dimension names z, y, x.

    Chunks (and shards) are clipped to the level's shape; `fill_value` (the volume's background) is
    what zarr pads edge chunks with, so the padding costs the codec almost nothing.
    """
    shape = voxels_zyx.shape
    chunks = tuple(min(c, n) for c, n in zip(cfg.chunk, shape, strict=True))
    shards = None
    if cfg.shard is not None:  # clipped to the level, rounded up to whole chunks
        shards = tuple(min(s, -(-n // c) * c) for s, c, n in zip(cfg.shard, chunks, shape, strict=True))
    with quiet_numcodecs_warning():
        array = zarr.create_array(
            store.zarr_store(path),
            shape=shape,
            chunks=chunks,
            shards=shards,
            dtype=voxels_zyx.dtype,
            fill_value=np.asarray(fill_value).astype(voxels_zyx.dtype).item(),
            dimension_names=["z", "y", "x"],
            overwrite=True,
            **codecs(cfg, voxels_zyx.dtype),
        )
    array[...] = voxels_zyx
