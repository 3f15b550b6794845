"""PSAT: output shapes follow the config; plane and slice position change the output; bad inputs."""

import pytest
import torch

from med3dinsight.config import ConfigError, load_config
from med3dinsight.config.model import PSATConfig
from med3dinsight.models import PSAT, build_model, slice_position


@pytest.mark.parametrize(
    "kw", [dict(), dict(num_queries=7, out_dim=16, num_layers=1), dict(dim=48, num_heads=6)]
)
def test_shapes_follow_config(kw, tiny_psat):
    cfg = tiny_psat(**kw)
    psat = PSAT(cfg, token_dim=20)
    out = psat(torch.randn(3, 11, 20), torch.tensor([0, 1, 2]), torch.tensor([0.0, 0.5, 1.0]))
    assert out.shape == (3, cfg.num_queries, cfg.out_dim)
    assert psat.decoder.layers[0].linear1.out_features == cfg.ffn_dim
    assert len(psat.decoder.layers) == cfg.num_layers


def test_plane_and_slice_position_change_the_output(tiny_psat):
    torch.manual_seed(0)
    psat = PSAT(tiny_psat(num_slice_bins=8), token_dim=32).eval()
    tokens = torch.randn(1, 9, 32).expand(3, -1, -1)
    with torch.no_grad():
        by_plane = psat(tokens, torch.tensor([0, 1, 2]), torch.full((3,), 0.3))[:, 0]
        by_slice = psat(tokens, torch.zeros(3, dtype=torch.long), torch.tensor([0.05, 0.5, 0.95]))[:, 0]
        same_bin = psat(tokens[:2], torch.zeros(2, dtype=torch.long), torch.tensor([0.5, 0.51]))[:, 0]
    for emb in (by_plane, by_slice):
        assert not torch.allclose(emb[0], emb[1]) and not torch.allclose(emb[1], emb[2])
    assert torch.allclose(same_bin[0], same_bin[1])  # one bin covers [0.5, 0.625)


def test_slot_binning_matches_authors_slice_div_2(tiny_psat):
    psat = PSAT(tiny_psat(num_slice_bins=128), token_dim=32)
    idx = torch.arange(256)
    slots = psat.slot(torch.zeros(256, dtype=torch.long), slice_position(idx, 256))
    assert torch.equal(slots, idx // 2)
    assert psat.slot(torch.tensor([2]), torch.tensor([1.0])).item() == 2 * 128 + 127


def test_model_embedding_and_recon_shapes(tiny_model):
    cfg = tiny_model()
    model = build_model(cfg)
    x = torch.randn(2, 1, 64, 64, 64)
    emb, recon = model(x, torch.tensor([0, 2]), torch.tensor([0.1, 0.9]))
    assert emb.shape == (2, cfg.psat.out_dim) and recon.shape == x.shape


@pytest.mark.parametrize(
    "plane,pos,match",
    [
        (torch.tensor([3]), torch.tensor([0.5]), "plane"),
        (torch.tensor([0.0]), torch.tensor([0.5]), "plane"),
        (torch.tensor([0]), torch.tensor([1.5]), "slice positions"),
        (torch.tensor([0, 1]), torch.tensor([0.5]), "shape"),
    ],
)
def test_bad_plane_or_position(plane, pos, match, tiny_psat):
    psat = PSAT(tiny_psat(), token_dim=32)
    with pytest.raises(ValueError, match=match):
        psat(torch.randn(1, 4, 32), plane, pos)


@pytest.mark.parametrize(
    "override,match",
    [
        ("dim=30", "divisible by num_heads"),
        ("num_slice_bins=0", "num_slice_bins"),
        ("dropout=1.0", "dropout"),
    ],
)
def test_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(PSATConfig, overrides=[override])
