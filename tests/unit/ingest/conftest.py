"""Fixtures of the ingest unit tests: configs, a store in tmp_path, small phantoms and files."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from med3dinsight.config.ingest import IngestConfig
from med3dinsight.data import ct_phantom, mr_phantom
from med3dinsight.data.dicom_writer import write_dicom_series
from med3dinsight.io.store import Store

from .ingest_helpers import CT_SHAPE_ZYX, CT_SPACING_XYZ, make_cfg, write_image


@pytest.fixture
def cfg() -> IngestConfig:
    return make_cfg()


@pytest.fixture
def wide_window_cfg() -> IngestConfig:
    """CT window wide enough that no phantom voxel is clipped (stored voxels equal the input)."""
    return make_cfg("preprocess.intensity.ct_window=[-4000,4000]")


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "store"))


@pytest.fixture(scope="session")
def ct_image() -> sitk.Image:
    """A small int16 CT phantom with a non-zero origin (identity direction)."""
    image, _ = ct_phantom(CT_SHAPE_ZYX, CT_SPACING_XYZ, seed=3)
    image.SetOrigin((-12.5, 40.25, -7.0))
    return image


@pytest.fixture(scope="session")
def ct_labels() -> sitk.Image:
    _, labels = ct_phantom(CT_SHAPE_ZYX, CT_SPACING_XYZ, seed=3)
    labels.SetOrigin((-12.5, 40.25, -7.0))
    return labels


@pytest.fixture(scope="session")
def mr_image() -> sitk.Image:
    image, _ = mr_phantom((24, 28, 20), (1.0, 1.0, 1.2), seed=5)
    return image


@pytest.fixture
def ct_nifti(tmp_path: Path, ct_image: sitk.Image) -> Path:
    return write_image(ct_image, tmp_path / "ct.nii.gz")


@pytest.fixture
def dicom_series(tmp_path: Path) -> Path:
    """A 12-slice CT series (24 x 20 pixels, 2.5 mm steps) written with pydicom."""
    image, _ = ct_phantom((12, 20, 24), (0.7, 0.7, 2.5), seed=7)
    folder = tmp_path / "series"
    write_dicom_series(image, str(folder), "CT", seed=7)
    return folder
