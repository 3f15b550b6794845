"""Alignment loss: cost, every loss kind, the full objective falls under a few optimizer steps."""

import pytest
import torch

from med3dinsight.config import ConfigError, load_config
from med3dinsight.config.model import BackboneConfig, LossConfig, ModelConfig, PSATConfig
from med3dinsight.losses import AlignmentLoss, WeightedCost, gather_batch, ot_alignment_loss
from med3dinsight.models import build_model

ot = pytest.importorskip("ot")


def test_weighted_cost_matches_definition():
    cost = WeightedCost(5)
    with torch.no_grad():
        cost.log_w.copy_(torch.randn(5))
    y, x = torch.randn(4, 5), torch.randn(6, 5)
    yn, xn = y / y.norm(dim=1, keepdim=True), x / x.norm(dim=1, keepdim=True)
    ref = ((yn[:, None] - xn[None]) ** 2 * cost.log_w.exp()).sum(-1)
    assert torch.allclose(cost(y, x), ref / ref.max(), atol=1e-5)
    assert cost(y, x).max().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="embeddings must be"):
        cost(y, torch.randn(6, 4))


@pytest.mark.parametrize("kind", ["partial_ot", "entropic_ot", "pot", "clip"])
def test_every_kind_gives_finite_loss_and_gradients(kind):
    torch.manual_seed(0)
    loss = AlignmentLoss(LossConfig(kind=kind), dim=8)
    e3, img, txt = (torch.randn(6, 8, requires_grad=True) for _ in range(3))
    x = torch.randn(6, 1, 4, 4, 4)
    terms = loss(e3, img, txt, x + 0.1, x)
    assert set(terms) == {"total", "ot_image", "ot_text", "recon"}
    terms["total"].backward()
    assert torch.isfinite(terms["total"]) and torch.isfinite(e3.grad).all() and e3.grad.abs().sum() > 0
    if kind != "clip":
        assert terms["ot_image"].item() >= torch.log(
            torch.tensor(6 / (1.0 if kind == "entropic_ot" else 0.95))
        )


def test_ours_equals_pot_loss_and_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 16, generator=g, dtype=torch.float64)
    cost = (
        WeightedCost(16).double()(x + 0.8 * torch.randn(10, 16, generator=g, dtype=torch.float64), x).detach()
    )
    ours, ref = cost.clone().requires_grad_(), cost.clone().requires_grad_()
    lo = ot_alignment_loss(ours, LossConfig(kind="partial_ot", eps=0.1, tol=1e-12, max_iter=5000))
    lp = ot_alignment_loss(ref, LossConfig(kind="pot", eps=0.1))
    lo.backward()
    lp.backward()
    assert lo.item() == pytest.approx(lp.item(), rel=1e-6)
    assert torch.allclose(ours.grad, ref.grad, rtol=1e-4, atol=1e-7)


def test_gather_is_identity_without_process_group():
    x = torch.randn(3, 4)
    out, rows = gather_batch(x)
    assert out is x and rows == slice(0, 3)


def test_full_loss_falls_in_a_few_steps():
    torch.manual_seed(0)
    model_cfg = ModelConfig(
        backbone=BackboneConfig(img_size=[32, 32, 32], feature_size=4, num_levels=2),
        psat=PSATConfig(
            num_queries=2, dim=16, num_layers=1, num_heads=2, ffn_dim=32, num_slice_bins=8, out_dim=8
        ),
    )
    model = build_model(model_cfg)
    loss_fn = AlignmentLoss(LossConfig(), dim=8)
    opt = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=3e-3)
    x = torch.randn(6, 1, 32, 32, 32)
    plane, pos = torch.tensor([0, 1, 2, 0, 1, 2]), torch.linspace(0, 1, 6)
    img, txt = torch.randn(6, 8), torch.randn(6, 8)
    totals = []
    for _ in range(8):
        emb, recon = model(x, plane, pos)
        total = loss_fn(emb, img, txt, recon, x)["total"]
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert totals[-1] < totals[0] - 0.05, totals


@pytest.mark.parametrize(
    "override,match",
    [
        ("kind=sinkhorn", "loss.kind"),
        ("mass=0", "loss.mass"),
        ("mass=1.2", "loss.mass"),
        ("eps=0", "loss.eps"),
    ],
)
def test_config_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(LossConfig, overrides=[override])


def test_mismatched_embeddings():
    with pytest.raises(ValueError, match="same shape"):
        AlignmentLoss(LossConfig(), dim=8)(
            torch.randn(4, 8), torch.randn(5, 8), torch.randn(4, 8), None, None
        )
