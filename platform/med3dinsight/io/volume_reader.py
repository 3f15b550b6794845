"""Read stored volumes: open by id, geometry, crops in voxel or physical coordinates, SimpleITK export.

Conventions: array axes and voxel coordinates are (z, y, x); ITK geometry (spacing, origin, direction,
physical points) is (x, y, z), physical points in LPS mm. A physical point p and a level-l voxel index
i_xyz are related by p = origin + D @ (q - origin), q = translation_l + scale_l * i_xyz, where
scale_l/translation_l are the OME transforms of level l (the OME frame is the image-aligned frame; the
rotation D lives in the namespaced attribute because OME-Zarr 0.5 cannot express it).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import SimpleITK as sitk
import zarr

from med3dinsight.io.chunk_cache import DEFAULT_CHUNK_CACHE, ChunkCache, read_box
from med3dinsight.io.ome_zarr_writer import NAMESPACE, quiet_numcodecs_warning, read_volume_attrs
from med3dinsight.io.store import Store


class VolumeNotFoundError(FileNotFoundError):
    """No complete volume with this id in the store (absent, or an interrupted write)."""


def open_volume(store: Store, volume_id: str, cache: ChunkCache | None = DEFAULT_CHUNK_CACHE) -> ZarrVolume:
    """Open the published volume `volume_id` of `store`.

    Args:
        store: the store.
        volume_id: a volume id from the catalog.
        cache: decoded-chunk cache for crops (default: the process-wide one; None reads straight through).

    Raises:
        VolumeNotFoundError: the volume does not exist, or exists without its completion marker.
    """
    path = store.volume_path(volume_id)
    attrs = read_volume_attrs(store, path)
    if attrs is None:
        if store.exists(path):
            raise VolumeNotFoundError(
                f"volume {volume_id!r} at {path} is incomplete (no completion marker: an interrupted write)"
            )
        raise VolumeNotFoundError(f"volume {volume_id!r} does not exist in {store.root}")
    group = zarr.open_group(store.zarr_store(path, read_only=True), mode="r", zarr_format=3)
    return ZarrVolume(group, path, cache)


class ZarrVolume:
    """One stored OME-Zarr volume (see the module docstring for the axis conventions).

    Args:
        group: the opened root group of `<volume_id>.ome.zarr`.
        path: its location, for messages and as the cache key.
        cache: decoded-chunk cache used by `read_crop`, or None.
    """

    def __init__(self, group: zarr.Group, path: str, cache: ChunkCache | None = None) -> None:
        self.group = group
        self.path = path
        self.cache = cache
        self.attrs: dict[str, Any] = dict(group.attrs[NAMESPACE])
        datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
        self._level_paths = [d["path"] for d in datasets]
        self._transforms = [
            (np.asarray(d["coordinateTransformations"][0]["scale"], dtype=np.float64),
             np.asarray(d["coordinateTransformations"][1]["translation"], dtype=np.float64))
            for d in datasets
        ]  # fmt: skip
        geometry = self.attrs["geometry"]
        self.spacing: tuple[float, float, float] = tuple(geometry["spacing"])
        self.origin: tuple[float, float, float] = tuple(geometry["origin"])
        self.direction: tuple[float, ...] = tuple(geometry["direction"])
        self._direction_matrix = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        self._arrays: dict[int, zarr.Array] = {}

    def __repr__(self) -> str:
        return f"ZarrVolume({self.volume_id!r}, shape={self.shape}, spacing={self.spacing})"

    @property
    def volume_id(self) -> str:
        return self.attrs["volume_id"]

    @property
    def modality(self) -> str | None:
        return self.attrs["modality"]

    @property
    def num_levels(self) -> int:
        return len(self._level_paths)

    @property
    def background(self) -> float:
        """The value of empty space (CT window low, MR 0, label 0): the default crop padding."""
        return float(self.attrs["background"])

    @cached_property
    def shape(self) -> tuple[int, int, int]:
        """Level-0 shape (z, y, x)."""
        return tuple(self.level(0).shape)

    def level(self, index: int) -> zarr.Array:
        """The pyramid level `index` (0 = full resolution) as a lazily read zarr array (z, y, x)."""
        if not 0 <= index < self.num_levels:
            raise ValueError(f"level must be in 0..{self.num_levels - 1}, got {index}")
        if index not in self._arrays:
            with quiet_numcodecs_warning():
                self._arrays[index] = self.group[self._level_paths[index]]
        return self._arrays[index]

    def level_spacing(self, level: int = 0) -> tuple[float, float, float]:
        """Spacing (x, y, z) in mm of a pyramid level."""
        return tuple(float(s) for s in self._transforms[level][0][::-1])

    def level_origin(self, level: int = 0) -> tuple[float, float, float]:
        """Physical point (x, y, z, LPS mm) of the centre of voxel (0, 0, 0) of a pyramid level."""
        translation_xyz = self._transforms[level][1][::-1]
        origin = np.asarray(self.origin)
        return tuple(float(v) for v in origin + self._direction_matrix @ (translation_xyz - origin))

    def physical_to_index(self, point_xyz: Sequence[float], level: int = 0) -> np.ndarray:
        """Continuous voxel coordinates (z, y, x) of a physical point (x, y, z, LPS mm) at a level."""
        scale_zyx, translation_zyx = self._transforms[level]
        origin = np.asarray(self.origin)
        q_xyz = origin + self._direction_matrix.T @ (np.asarray(point_xyz, dtype=np.float64) - origin)
        return (q_xyz[::-1] - translation_zyx) / scale_zyx

    def index_to_physical(self, index_zyx: Sequence[float], level: int = 0) -> np.ndarray:
        """Physical point (x, y, z, LPS mm) of continuous voxel coordinates (z, y, x) at a level."""
        scale_zyx, translation_zyx = self._transforms[level]
        q_xyz = (translation_zyx + scale_zyx * np.asarray(index_zyx, dtype=np.float64))[::-1]
        origin = np.asarray(self.origin)
        return origin + self._direction_matrix @ (q_xyz - origin)

    def read_crop(
        self, start_zyx: Sequence[int], size_zyx: Sequence[int], level: int = 0, fill_value: float | None = None
    ) -> np.ndarray:
        """Voxels [start, start + size) of a level; parts outside the volume are `fill_value`.

        Only the chunks that intersect the crop are read, through the decoded-chunk cache.

        Args:
            start_zyx: first voxel (z, y, x); may be negative.
            size_zyx: crop size (z, y, x) in voxels, each >= 1.
            level: pyramid level.
            fill_value: padding value (default: `background`).

        Returns:
            Array of shape size_zyx and the stored dtype.
        """
        if len(start_zyx) != 3 or len(size_zyx) != 3 or any(int(s) < 1 for s in size_zyx):
            raise ValueError(f"start_zyx and size_zyx must be 3 ints with size >= 1, got {start_zyx}, {size_zyx}")
        array = self.level(level)
        start = np.asarray(start_zyx, dtype=np.int64)
        stop = start + np.asarray(size_zyx, dtype=np.int64)
        low = np.maximum(start, 0)
        high = np.minimum(stop, array.shape)
        inside = bool(np.all(high > low))
        if inside and np.array_equal(low, start) and np.array_equal(high, stop):
            return read_box(array, low, high, self.cache, (self.path, level))
        fill = self.background if fill_value is None else fill_value
        crop = np.full(tuple(int(s) for s in size_zyx), fill, dtype=array.dtype)
        if inside:
            target = tuple(slice(a - s, b - s) for a, b, s in zip(low, high, start, strict=True))
            crop[target] = read_box(array, low, high, self.cache, (self.path, level))
        return crop

    def read_crop_physical(
        self, center_xyz_mm: Sequence[float], size_zyx: Sequence[int], level: int = 0,
        fill_value: float | None = None,
    ) -> np.ndarray:  # fmt: skip
        """The stored voxels (no interpolation) of a crop centred on a physical point.

        The crop is the `size_zyx` block of the level's grid whose centre is nearest to `center_xyz_mm`
        (for even sizes the centre lies between voxels). Uses the full direction/origin/spacing.

        Args:
            center_xyz_mm: physical point (x, y, z), LPS mm.
            size_zyx: crop size (z, y, x) in voxels.
            level: pyramid level.
            fill_value: padding value outside the volume (default: `background`).
        """
        center = self.physical_to_index(center_xyz_mm, level)
        start = np.floor(center - (np.asarray(size_zyx, dtype=np.float64) - 1) / 2 + 0.5).astype(np.int64)
        return self.read_crop(start.tolist(), size_zyx, level, fill_value)

    def to_sitk(self, level: int = 0) -> sitk.Image:
        """A whole pyramid level as a SimpleITK image with its geometry (spacing, origin, direction)."""
        image = sitk.GetImageFromArray(self.level(level)[...])
        image.SetSpacing(self.level_spacing(level))
        image.SetOrigin(self.level_origin(level))
        image.SetDirection(self.direction)
        return image
