"""The encoder runner in-process: batching does not change embeddings, heads, model lookup."""

import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from med3dinsight.config.serve import CropConfig, ServeConfig
from med3dinsight.io.store import Store
from med3dinsight.serving.runner import EncoderRunner, locate_model, resolve_model_dir

from . import serve_helpers as helpers


def runner_for(export, **crop) -> EncoderRunner:
    return EncoderRunner(export, ServeConfig(model=str(export), crop=CropConfig(**crop)))


def test_batched_embeddings_equal_single_calls_and_the_encoder(tmp_path):
    runner = runner_for(helpers.make_export(tmp_path / "m"), max_windows=4)
    small = runner.preprocessor.from_upload(helpers.write_ct(tmp_path / "a.nii.gz").read_bytes(), "a.nii.gz")
    big_file = helpers.write_ct(tmp_path / "b.nii.gz", seed=3, shape_zyx=(40, 90, 80))
    big = runner.preprocessor.from_upload(big_file.read_bytes(), "b.nii.gz")
    assert len(big.starts_zyx) > 1
    items = [runner.item(small), runner.item(big, "coronal", 0.2), runner.item(small)]
    batched = runner.embed_batch(items)
    singles = [runner.embed_batch([item])[0] for item in items]
    for a, b in zip(batched, singles, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        x = torch.from_numpy(big.windows_W1DHW)
        expected = runner.encoder.embed(x, torch.full((len(x),), 1), torch.full((len(x),), 0.2)).mean(0)
    np.testing.assert_allclose(batched[1], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(batched[0], batched[1])


def test_segmentation_head_returns_labels_in_the_input_geometry(tmp_path):
    runner = runner_for(helpers.make_export(tmp_path / "m", head="segmentation"))
    path = helpers.write_ct(tmp_path / "a.nii.gz", direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    labels, counts = runner.segment(runner.preprocessor.from_upload(path.read_bytes(), "a.nii.gz"))
    source = sitk.ReadImage(str(path))
    assert labels.GetSize() == source.GetSize() and labels.GetDirection() == source.GetDirection()
    np.testing.assert_allclose(labels.GetOrigin(), source.GetOrigin(), atol=1e-6)
    assert sum(counts.values()) == int(np.prod(source.GetSize())) and set(counts) == {"background", "body", "bone"}
    assert runner.tasks == ["embed", "segmentation"]


def test_classification_head_probabilities(tmp_path):
    runner = runner_for(helpers.make_export(tmp_path / "m", head="classification"))
    prepared = runner.preprocessor.from_upload(helpers.write_ct(tmp_path / "a.nii").read_bytes(), "a.nii")
    probabilities = runner.classify(prepared)
    assert set(probabilities) == {"background", "body", "bone"}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_model_lookup_by_path_and_store_name(tmp_path):
    export = helpers.make_export(tmp_path / "export")
    store = Store(str(tmp_path / "store"))
    shutil.copytree(export, tmp_path / "store" / "models" / "tiny")
    assert resolve_model_dir(str(export), store) == export.resolve()
    assert resolve_model_dir("tiny", store) == tmp_path / "store" / "models" / "tiny"
    with pytest.raises(ValueError, match="no export"):
        locate_model("missing", store)
    with pytest.raises(ValueError, match="not a valid model name"):
        locate_model("../../etc", store)
    info = runner_for(export).info()
    assert info["embedding_dim"] == 12 and info["architecture"] == "unet_small" and info["tasks"] == ["embed"]
