"""A .nii.gz is inflated once: the integrity scan writes a plain .nii that SimpleITK reads, same image."""

from __future__ import annotations

import gzip
import os

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from med3dinsight.ingest.reading import read_checked_image
from med3dinsight.ingest.reasons import Reason, VolumeRejected

from .ingest_helpers import rotation_z, write_image


def read(path, scratch_dir=None):
    return read_checked_image([str(path)], "file", str(path), "LPS", None, 4096.0, scratch_dir=scratch_dir)[0]


def assert_same_image(a: sitk.Image, b: sitk.Image) -> None:
    np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert (a.GetSpacing(), a.GetOrigin(), a.GetDirection()) == (b.GetSpacing(), b.GetOrigin(), b.GetDirection())
    assert a.GetPixelID() == b.GetPixelID()


def test_oblique_ct_reads_the_same_through_the_scratch_file(tmp_path, ct_image):
    oblique = sitk.Image(ct_image)
    oblique.SetDirection(rotation_z(25.0))
    oblique.SetOrigin((-12.5, 40.0, 7.25))
    path = write_image(oblique, tmp_path / "ct.nii.gz")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert_same_image(read(path, str(scratch)), read(path))
    assert os.listdir(scratch) == []


def test_header_extension_and_float_data_survive(tmp_path):
    data = np.random.default_rng(0).normal(size=(9, 10, 11)).astype(np.float32)
    image = nib.Nifti1Image(data, np.diag([0.8, 0.9, 1.5, 1.0]))
    image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"exported by a scanner console"))
    path = tmp_path / "ext.nii.gz"
    nib.save(image, path)
    assert nib.load(path).dataobj.offset > 352  # the extension sits between header and voxels
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert_same_image(read(path, str(scratch)), read(path))


def test_truncated_file_is_still_rejected_and_leaves_nothing(tmp_path, ct_image):
    whole = write_image(ct_image, tmp_path / "whole.nii")
    raw = whole.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw)[: len(gzip.compress(raw)) // 2])
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(VolumeRejected) as info:
        read(cut, str(scratch))
    assert info.value.reason == Reason.TRUNCATED
    assert os.listdir(scratch) == []
