"""Small on-disk inputs for the Ray tests, written with SimpleITK (good volumes plus broken ones)."""

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def write_ct(path: Path, seed: int, shape_zyx: tuple[int, int, int] = (24, 32, 32)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = np.full(shape_zyx, -1000, np.int16)
    z, y, x = np.ogrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    body = ((z - 12) / 10.0) ** 2 + ((y - 16) / 12.0) ** 2 + ((x - 16) / 13.0) ** 2 < 1
    hu[body] = 40 + rng.integers(-20, 20, body.sum())
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.9, 0.9, 2.5))
    image.SetOrigin((-10.0, 20.0, 5.0 * seed))
    sitk.WriteImage(image, str(path))
    return hu


def write_inputs(folder: Path) -> dict[str, str]:
    """Two good CT files, one unknown format and one truncated NIfTI. Returns name -> expected status."""
    folder.mkdir(parents=True, exist_ok=True)
    write_ct(folder / "ct_a.nii.gz", seed=1)
    write_ct(folder / "ct_b.mha", seed=2)
    (folder / "notes.xyz").write_bytes(b"not a volume")
    write_ct(folder / "broken.nii", seed=3)
    data = (folder / "broken.nii").read_bytes()
    (folder / "broken.nii").write_bytes(data[: len(data) // 2])
    return {"ct_a.nii.gz": "ok", "ct_b.mha": "ok", "notes.xyz": "rejected", "broken.nii": "rejected"}
