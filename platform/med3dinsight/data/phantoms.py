"""Deterministic synthetic CT and MR phantoms with label maps (sample data for tests and the demo).

Shapes are (z, y, x) voxels, spacings (x, y, z) mm; images come back as SimpleITK images in LPS with an
identity direction, centred on the physical origin.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

CT_ORGANS = (("liver-like", 60.0), ("spleen-like", 45.0), ("kidney-like", 150.0))
"""(name, HU) of the labelled organs; label id = position + 1."""
MR_TISSUES = {"T1": (800.0, 550.0, 150.0), "T2": (450.0, 650.0, 1400.0)}
"""Contrast -> intensities of (white-matter-like, grey-matter-like, fluid) tissue; labels 1, 2, 3."""


def ct_phantom(
    shape_zyx: Sequence[int] = (64, 64, 64), spacing_xyz: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0,
    organ_scale: float = 1.0,
) -> tuple[sitk.Image, sitk.Image]:  # fmt: skip
    """A CT-like torso: air -1000 HU, body ~0 HU, lungs, a spine, organs with labels 1..3, noise.

    Args:
        shape_zyx: voxels (z, y, x).
        spacing_xyz: mm (x, y, z).
        seed: organ placement and noise; equal seeds give identical images.
        organ_scale: multiplies the organ radii (at 1.0 each organ is ~0.25% of the volume).

    Returns:
        (image int16 HU, labels uint8 with 0 = background and 1..len(CT_ORGANS) = organs).
    """
    rng = np.random.default_rng(seed)
    z, y, x = _unit_grid(shape_zyx)
    hu = np.full(tuple(shape_zyx), -1000.0)
    labels = np.zeros(tuple(shape_zyx), np.uint8)
    body = _ellipsoid(z, y, x, (0.0, 0.0, 0.0), (0.95, 0.7, 0.85))
    hu[body] = 0.0
    for side in (-1.0, 1.0):
        hu[_ellipsoid(z, y, x, (0.45, -0.05, side * 0.4), (0.4, 0.4, 0.28)) & body] = -850.0
    hu[(np.hypot(y - 0.45, x) < 0.12) & body] = 700.0  # spine
    for label, (_, organ_hu) in enumerate(CT_ORGANS, start=1):
        centre = (rng.uniform(-0.5, -0.1), rng.uniform(-0.3, 0.2), rng.uniform(-0.45, 0.45))
        radii = tuple(organ_scale * rng.uniform(0.12, 0.22, size=3))
        organ = _ellipsoid(z, y, x, centre, radii) & body
        hu[organ] = organ_hu
        labels[organ] = label
    hu += rng.normal(0.0, 15.0, hu.shape)
    return _to_sitk(np.rint(hu).astype(np.int16), spacing_xyz), _to_sitk(labels, spacing_xyz)


def mr_phantom(
    shape_zyx: Sequence[int] = (64, 64, 64), spacing_xyz: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0,
    contrast: str = "T1",
) -> tuple[sitk.Image, sitk.Image]:  # fmt: skip
    """An MR-like head: zero background, scalp, white/grey-matter-like tissue, fluid, bias field, noise.

    Args:
        shape_zyx: voxels (z, y, x).
        spacing_xyz: mm (x, y, z).
        seed: bias field and noise.
        contrast: "T1" or "T2" (tissue intensities of MR_TISSUES).

    Returns:
        (image uint16, non-negative; labels uint8: 1 white-matter-like, 2 grey-matter-like, 3 fluid).
    """
    if contrast not in MR_TISSUES:
        raise ValueError(f"contrast must be one of {sorted(MR_TISSUES)}, got {contrast!r}")
    rng = np.random.default_rng(seed)
    z, y, x = _unit_grid(shape_zyx)
    white, grey, fluid = MR_TISSUES[contrast]
    signal = np.zeros(tuple(shape_zyx))
    labels = np.zeros(tuple(shape_zyx), np.uint8)
    signal[_ellipsoid(z, y, x, (0, 0, 0), (0.9, 0.85, 0.75))] = 0.6 * grey  # scalp
    brain = _ellipsoid(z, y, x, (0.05, 0, 0), (0.78, 0.72, 0.62))
    inner = _ellipsoid(z, y, x, (0.05, 0, 0), (0.6, 0.55, 0.47))
    for mask, value, label in ((brain, grey, 2), (inner, white, 1)):
        signal[mask], labels[mask] = value, label
    for side in (-1.0, 1.0):
        ventricle = _ellipsoid(z, y, x, (0.1, -0.05, side * 0.12), (0.25, 0.2, 0.07))
        signal[ventricle], labels[ventricle] = fluid, 3
    gradient = rng.uniform(-0.25, 0.25, size=4)
    bias = np.exp(gradient[0] * x + gradient[1] * y + gradient[2] * z + gradient[3] * x * y)
    noisy = signal * bias + rng.normal(0.0, 12.0, signal.shape)
    magnitude = np.abs(noisy + 1j * rng.normal(0.0, 12.0, signal.shape))  # Rician background like MR
    return _to_sitk(np.rint(magnitude).astype(np.uint16), spacing_xyz), _to_sitk(labels, spacing_xyz)


def _unit_grid(shape_zyx: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(shape_zyx) != 3 or any(n < 2 for n in shape_zyx):
        raise ValueError(f"shape_zyx must be 3 sizes >= 2, got {shape_zyx}")
    axes = [np.linspace(-1.0, 1.0, n) for n in shape_zyx]
    return tuple(np.meshgrid(*axes, indexing="ij", sparse=True))  # type: ignore[return-value]


def _ellipsoid(z: np.ndarray, y: np.ndarray, x: np.ndarray, centre: Sequence[float],
               radii: Sequence[float]) -> np.ndarray:  # fmt: skip
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (x - centre[2]) / radii[2]
    ) ** 2 <= 1.0


def _to_sitk(voxels_zyx: np.ndarray, spacing_xyz: Sequence[float]) -> sitk.Image:
    if len(spacing_xyz) != 3 or any(s <= 0 for s in spacing_xyz):
        raise ValueError(f"spacing_xyz must be 3 positive mm values, got {spacing_xyz}")
    image = sitk.GetImageFromArray(voxels_zyx)
    image.SetSpacing([float(s) for s in spacing_xyz])
    image.SetOrigin([-(n - 1) / 2 * s for n, s in zip(voxels_zyx.shape[::-1], spacing_xyz, strict=True)])
    return image
