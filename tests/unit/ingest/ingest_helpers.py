"""Helpers of the ingest unit tests: small configs, sources, image writers (imported by the tests)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.io.sources import Source

CT_SHAPE_ZYX = (20, 28, 36)
CT_SPACING_XYZ = (0.8, 0.9, 1.5)


def make_cfg(*overrides: str) -> IngestConfig:
    """An ingest config with small chunks (so crops cross chunk borders) plus dotlist overrides."""
    return load_config(IngestConfig, overrides=["input=unused", "zarr.chunk=[8,16,16]", *overrides])


def file_source(path: str | Path) -> Source:
    return Source(uri=str(path), kind="file", files=[str(path)])


def dicom_source(folder: str | Path) -> Source:
    files = sorted(glob.glob(os.path.join(str(folder), "*.dcm")))
    return Source(uri=str(folder), kind="dicom", files=files)


def write_image(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path), useCompression=str(path).endswith(".gz"))
    return path


def rotation_z(degrees: float) -> tuple[float, ...]:
    """Row-major 3x3 rotation about z (an oblique but orthonormal direction)."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


def nibabel_test_file(name: str) -> Path:
    """A file of nibabel's own test data (ships inside the nibabel wheel)."""
    import nibabel

    path = Path(nibabel.__file__).parent / "tests" / "data" / name
    assert path.is_file(), f"nibabel no longer ships {path}"
    return path
