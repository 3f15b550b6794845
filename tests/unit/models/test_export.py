"""Encoder export: safetensors + JSON round trip gives identical outputs, without unpickling."""

import json

import pytest
import torch

from med3dinsight.models import build_backbone, build_model
from med3dinsight.models.export import load_encoder, save_encoder


@pytest.mark.parametrize("name", ["unet_small", "unetr"])
def test_round_trip_identical(tmp_path, tiny_model, name):
    torch.manual_seed(0)
    model = build_model(tiny_model(name)).eval()
    out = save_encoder(
        model, tmp_path / "enc", preprocessing={"spacing": [1.5, 1.5, 1.5]}, source_run="runs/x"
    )
    record = json.loads((out / "encoder.json").read_text())
    assert record["embedding_dim"] == 24 and record["source_run"] == "runs/x"
    assert record["preprocessing"] == {"spacing": [1.5, 1.5, 1.5]} and record["backbone"]["name"] == name
    assert not list(out.glob(".*.tmp"))
    loaded = load_encoder(out)
    x = torch.randn(1, 1, 64, 64, 64)
    plane, pos = torch.tensor([1]), torch.tensor([0.4])
    with torch.no_grad():
        assert torch.equal(loaded(x), model.encoder(x))
        assert torch.equal(loaded.embed(x, plane, pos), model(x, plane, pos)[0])
    with pytest.raises(ValueError, match="needs plane"):
        loaded.embed(x)


def test_bare_backbone_exports_mean_token_embedding(tmp_path, tiny_backbone):
    backbone = build_backbone(tiny_backbone()).eval()
    loaded = load_encoder(save_encoder(backbone, tmp_path))
    x = torch.randn(1, 1, 64, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.embed(x), backbone.encoder(x).mean(1))
    assert loaded.psat is None and loaded.embedding_dim == backbone.token_dim


def test_load_errors(tmp_path, tiny_backbone):
    with pytest.raises(ValueError, match="not an encoder export"):
        load_encoder(tmp_path)
    save_encoder(build_backbone(tiny_backbone()), tmp_path)
    record = json.loads((tmp_path / "encoder.json").read_text())
    record["backbone"]["feature_size"] = 8
    (tmp_path / "encoder.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="does not match"):
        load_encoder(tmp_path)
