"""The model core on CUDA: the OT plan matches the CPU solver, a bf16 training step stays finite."""

import pytest
import torch

from med3dinsight.config.model import BackboneConfig, LossConfig, ModelConfig, PSATConfig
from med3dinsight.losses import AlignmentLoss, partial_ot_plan
from med3dinsight.models import build_model

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_plan_on_cuda_matches_cpu() -> None:
    cost = torch.rand(8, 64, 64, dtype=torch.float64)
    cpu = partial_ot_plan(cost, mass=0.95, eps=0.03)
    gpu = partial_ot_plan(cost.cuda(), mass=0.95, eps=0.03)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("backbone", ["unet_small", "swin_unetr"])
def test_bf16_training_step_on_cuda(backbone: str) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone=BackboneConfig(name=backbone, img_size=[64, 64, 64], feature_size=12, bf16_autocast=True,
                                gradient_checkpointing=True),
        psat=PSATConfig(num_queries=4, dim=32, num_layers=1, num_heads=2, ffn_dim=64, num_slice_bins=16, out_dim=16),
    )  # fmt: skip
    model = build_model(cfg).cuda()
    loss_fn = AlignmentLoss(LossConfig(), 16).cuda()
    optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=1e-3)
    x = torch.randn(4, 1, 64, 64, 64, device="cuda")
    plane, position = torch.tensor([0, 1, 2, 0], device="cuda"), torch.rand(4, device="cuda")
    image, text = torch.randn(4, 16, device="cuda"), torch.randn(4, 16, device="cuda")
    losses = []
    for _ in range(3):
        emb, recon = model(x, plane, position)
        terms = loss_fn(emb, image, text, recon, x)
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        losses.append(terms["total"].item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]
