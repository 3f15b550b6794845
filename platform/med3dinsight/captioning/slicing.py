"""Tri-planar slice sampling in physical orientation (pure numpy).

Conventions: a volume array is indexed (z, y, x) = ITK (k, j, i); `direction` is ITK's row-major 3x3
matrix whose column a is image axis a (i, j, k) in physical LPS space (+x = patient Left, +y =
Posterior, +z = Superior). A plane is chosen by its physical normal, so "axial" is axial whatever the
stored axis order:

    plane     normal   displayed rows (top -> bottom)   displayed columns (left -> right)
    axial     z (S)    anterior -> posterior (+y)        patient right -> left (+x)   radiological view
    coronal   y (P)    superior -> inferior (-z)         patient right -> left (+x)
    sagittal  x (L)    superior -> inferior (-z)         anterior -> posterior (+y)

`slice_index` is the index along the stored array axis (what training reads back); `position` is the
slice's place along the physical normal in [0, 1], 0 at the R / A / I end and 1 at the L / P / S end.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# plane -> (physical normal axis, (row physical axis, sign), (column physical axis, sign)); axes 0=x 1=y 2=z.
PLANE_AXES: dict[str, tuple[int, tuple[int, int], tuple[int, int]]] = {
    "axial": (2, (1, 1), (0, 1)),
    "coronal": (1, (2, -1), (0, 1)),
    "sagittal": (0, (2, -1), (1, 1)),
}


@dataclass(frozen=True, slots=True)
class SliceRef:
    """One sampled slice of a volume."""

    volume_id: str
    plane: str
    slice_index: int
    """Index along `array_axis` of the stored (z, y, x) array."""
    array_axis: int
    """0, 1 or 2: the stored array axis normal to the plane."""
    position: float
    """Place along the physical normal in [0, 1] (0: R / A / I end, 1: L / P / S end)."""


def array_axis_of_physical(direction: Sequence[float], physical_axis: int) -> tuple[int, int]:
    """The stored (z, y, x) array axis that runs closest to a physical axis, and its sign.

    Args:
        direction: ITK direction, 9 floats row-major (columns are image axes i, j, k in LPS).
        physical_axis: 0 (x, L), 1 (y, P) or 2 (z, S).

    Returns:
        (array_axis, sign): array_axis in {0, 1, 2} of the (z, y, x) array; sign +1 when increasing the
        index moves towards +physical_axis, else -1.

    Raises:
        ValueError: when the direction matrix does not map image axes one-to-one onto physical axes
            (a 45-degree oblique volume has no well-defined plane).
    """
    matrix = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    physical_of_image = np.abs(matrix).argmax(axis=0)
    if sorted(physical_of_image.tolist()) != [0, 1, 2]:
        raise ValueError(f"direction {list(direction)} has no unique closest axis per physical axis")
    image_axis = int(np.flatnonzero(physical_of_image == physical_axis)[0])
    sign = 1 if matrix[physical_axis, image_axis] > 0 else -1
    return 2 - image_axis, sign


def plane_axis(direction: Sequence[float], plane: str) -> tuple[int, int]:
    """(array_axis, sign) of the normal of `plane` in the stored (z, y, x) array (see `array_axis_of_physical`)."""
    return array_axis_of_physical(direction, PLANE_AXES[plane][0])


def extract_slice(
    volume_zyx: np.ndarray, spacing_xyz: Sequence[float], direction: Sequence[float], plane: str, slice_index: int
) -> tuple[np.ndarray, tuple[float, float]]:
    """One slice in display orientation (table in the module docstring).

    Args:
        volume_zyx: array (z, y, x) of any dtype.
        spacing_xyz: voxel spacing (x, y, z) in mm (ITK order).
        direction: ITK direction, 9 floats row-major.
        plane: axial, coronal or sagittal.
        slice_index: index along the plane's stored array axis.

    Returns:
        (image_RC, (row_mm, col_mm)): the 2D slice (rows, columns) and its pixel spacing in mm.
    """
    _, (row_phys, row_sign), (col_phys, col_sign) = PLANE_AXES[plane]
    normal_axis, _ = plane_axis(direction, plane)
    image = np.take(volume_zyx, slice_index, axis=normal_axis)
    remaining = [a for a in range(3) if a != normal_axis]  # stored axes left in `image`, in order
    row_axis, row_dir = array_axis_of_physical(direction, row_phys)
    col_axis, col_dir = array_axis_of_physical(direction, col_phys)
    if remaining.index(row_axis) == 1:
        image = image.T
    if row_dir != row_sign:
        image = image[::-1, :]
    if col_dir != col_sign:
        image = image[:, ::-1]
    spacing_zyx = [float(s) for s in reversed(spacing_xyz)]
    assert {row_axis, col_axis} == set(remaining), "rows and columns must be the two in-plane axes"
    return np.ascontiguousarray(image), (spacing_zyx[row_axis], spacing_zyx[col_axis])


def relative_position(index: int, size: int, sign: int) -> float:
    """Position in [0, 1] along the physical normal of array index `index` of `size` (sign from `plane_axis`)."""
    fraction = index / (size - 1) if size > 1 else 0.5
    return float(fraction if sign > 0 else 1.0 - fraction)


def uniform_indices(candidates: Sequence[int], count: int) -> list[int]:
    """`count` indices at the centres of equal bins over `candidates` (all of them when fewer), ascending."""
    n = len(candidates)
    if n <= count:
        return sorted(int(c) for c in candidates)
    picks = sorted({int((i + 0.5) * n / count) for i in range(count)})
    return [int(candidates[p]) for p in picks]


def random_indices(candidates: Sequence[int], count: int, seed: int, volume_id: str, plane: str) -> list[int]:
    """`count` distinct indices drawn from `candidates`, reproducible per (seed, volume_id, plane), ascending."""
    key = hashlib.sha256(f"{seed}/{volume_id}/{plane}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(key[:8], "little"))
    if len(candidates) <= count:
        return sorted(int(c) for c in candidates)
    return sorted(int(c) for c in rng.choice(np.asarray(candidates), size=count, replace=False))


def foreground_fractions(volume_zyx: np.ndarray, array_axis: int, threshold: float) -> np.ndarray:
    """Fraction of voxels above `threshold` in every slice along `array_axis`; shape (size along that axis,)."""
    other = tuple(a for a in range(3) if a != array_axis)
    return (volume_zyx > threshold).mean(axis=other)


def sample_slices(
    volume_zyx: np.ndarray,
    direction: Sequence[float],
    volume_id: str,
    planes: Sequence[str],
    count: int,
    strategy: str = "uniform",
    seed: int = 0,
    foreground_threshold: float | None = None,
    foreground_fraction: float = 0.0,
) -> list[SliceRef]:
    """Slices of one volume per plane, by strategy.

    Args:
        volume_zyx: array (z, y, x); only read by the foreground strategy.
        direction: ITK direction, 9 floats row-major.
        volume_id: recorded in every `SliceRef` and mixed into the random seed.
        planes: any of axial, coronal, sagittal.
        count: slices per plane (fewer when the axis is shorter, or fewer slices pass the foreground test).
        strategy: uniform, random or foreground.
        seed: random strategy seed.
        foreground_threshold: foreground strategy: voxels above it count as foreground.
        foreground_fraction: foreground strategy: keep slices with at least this fraction of foreground.

    Returns:
        SliceRefs grouped by plane (in `planes` order), ascending slice_index within a plane. A plane with no
        slice passing the foreground test contributes none.

    Raises:
        ValueError: on an unknown plane or strategy, or a foreground strategy without a threshold.
    """
    refs: list[SliceRef] = []
    for plane in planes:
        if plane not in PLANE_AXES:
            raise ValueError(f"unknown plane {plane!r}; expected one of {tuple(PLANE_AXES)}")
        axis, sign = plane_axis(direction, plane)
        size = volume_zyx.shape[axis]
        candidates = list(range(size))
        if strategy == "uniform":
            picks = uniform_indices(candidates, count)
        elif strategy == "random":
            picks = random_indices(candidates, count, seed, volume_id, plane)
        elif strategy == "foreground":
            if foreground_threshold is None:
                raise ValueError("the foreground strategy needs a foreground_threshold")
            fractions = foreground_fractions(volume_zyx, axis, foreground_threshold)
            picks = uniform_indices([i for i in candidates if fractions[i] >= foreground_fraction], count)
        else:
            raise ValueError(f"unknown slice strategy {strategy!r}")
        refs += [SliceRef(volume_id, plane, i, axis, relative_position(i, size, sign)) for i in picks]
    return refs
