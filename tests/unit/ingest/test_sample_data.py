"""Synthetic phantoms and the sample dataset: deterministic, plausible, and every file ingests."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import SimpleITK as sitk

from med3dinsight.data import ct_phantom, label_path, mr_phantom, write_sample_dataset
from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io.sources import Source

from .ingest_helpers import file_source, make_cfg


def _array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def test_phantoms_are_deterministic_per_seed():
    same = [_array(ct_phantom((16, 20, 24), (1.0, 1.0, 2.0), seed=4)[0]) for _ in range(2)]
    np.testing.assert_array_equal(*same)
    other = _array(ct_phantom((16, 20, 24), (1.0, 1.0, 2.0), seed=5)[0])
    assert not np.array_equal(same[0], other)
    np.testing.assert_array_equal(_array(mr_phantom(seed=1)[0]), _array(mr_phantom(seed=1)[0]))


def test_ct_phantom_has_air_body_bone_and_labelled_organs():
    image, labels = ct_phantom((32, 40, 48), (0.8, 0.8, 1.5), seed=0)
    hu, ids = _array(image), _array(labels)
    assert hu.dtype == np.int16 and ids.dtype == np.uint8 and hu.shape == (32, 40, 48)
    assert image.GetSpacing() == (0.8, 0.8, 1.5) and image.GetSize() == labels.GetSize()
    assert set(np.unique(ids)) == {0, 1, 2, 3}
    assert np.median(hu[0]) < -900 and hu.max() > 600  # air in the corners, bone present
    for label, organ_hu in zip((1, 2, 3), (60, 45, 150), strict=True):
        assert abs(np.mean(hu[ids == label]) - organ_hu) < 10


@pytest.mark.parametrize("contrast", ["T1", "T2"])
def test_mr_phantom_is_non_negative_with_distinct_tissues(contrast):
    image, labels = mr_phantom((24, 24, 24), (1.0, 1.0, 1.0), seed=0, contrast=contrast)
    voxels, ids = _array(image).astype(float), _array(labels)
    assert voxels.min() >= 0 and set(np.unique(ids)) == {0, 1, 2, 3}
    means = [voxels[ids == label].mean() for label in (1, 2, 3)]
    assert len({round(m, -2) for m in means}) == 3
    with pytest.raises(ValueError, match="contrast"):
        mr_phantom(contrast="FLAIR")


def test_sample_dataset_ingests_completely(tmp_path, store):
    pytest.importorskip("nilearn")
    inputs = write_sample_dataset(str(tmp_path / "sample"), seed=0, size=24)
    assert [os.path.basename(p) for p in inputs] == [
        "ct_0.nii.gz", "ct_1.nii.gz", "mr_0.mha", "ct_2.nrrd", "ct_3", "mni152.nii.gz"
    ]  # fmt: skip
    cfg = make_cfg()
    modalities = []
    for path in inputs:
        if os.path.isdir(path):
            source = Source(uri=path, kind="dicom", files=sorted(glob.glob(os.path.join(path, "*.dcm"))))
        else:
            source = file_source(path)
        row = ingest_volume(source, cfg, store)
        assert row["status"] == "ok", row["message"]
        modalities.append(row["modality"])
        name = os.path.basename(path).split(".")[0]
        if name != "mni152":
            label_row = ingest_volume(file_source(label_path(str(tmp_path / "sample"), name)), cfg, store, True)
            assert label_row["status"] == "ok" and label_row["shape"] == row["shape"], label_row["message"]
            assert label_row["origin"] == pytest.approx(row["origin"], abs=1e-4)
    assert modalities == ["CT", "CT", "MR", "CT", "CT", "MR"]


def test_sample_dataset_is_reproducible(tmp_path):
    first = write_sample_dataset(str(tmp_path / "a"), seed=2, size=16, include_mni=False)
    second = write_sample_dataset(str(tmp_path / "b"), seed=2, size=16, include_mni=False)
    for a, b in zip(first, second, strict=True):
        files_a = sorted(glob.glob(os.path.join(a, "*"))) if os.path.isdir(a) else [a]
        files_b = sorted(glob.glob(os.path.join(b, "*"))) if os.path.isdir(b) else [b]
        for fa, fb in zip(files_a, files_b, strict=True):
            np.testing.assert_array_equal(_array(sitk.ReadImage(fa)), _array(sitk.ReadImage(fb)))
    with pytest.raises(ValueError, match="size"):
        write_sample_dataset(str(tmp_path / "c"), size=4)
