"""Every backbone: forward + backward at 64^3 on CPU, the encoder alone, the switches, config errors."""

import pytest
import torch

from med3dinsight.config import ConfigError, load_config
from med3dinsight.config.model import BackboneConfig
from med3dinsight.models import build_backbone
from med3dinsight.models.backbones import small_input_convs_in_float32


@pytest.mark.parametrize("name", ["unet_small", "swin_unetr", "unetr"])
@pytest.mark.parametrize("switches", [False, True], ids=["plain", "bf16+checkpointing"])
def test_forward_backward_64(name, switches, tiny_backbone):
    torch.manual_seed(0)
    cfg = tiny_backbone(name, gradient_checkpointing=switches, bf16_autocast=switches)
    model = build_backbone(cfg)
    x = torch.randn(1, 1, 64, 64, 64)
    tokens, recon = model(x)
    stride = {"unet_small": 8, "swin_unetr": 32, "unetr": 16}[name]
    assert tokens.shape == (1, (64 // stride) ** 3, cfg.token_dim) and tokens.dtype == torch.float32
    assert recon.shape == x.shape and recon.dtype == torch.float32
    ((recon - x).square().mean() + tokens.square().mean()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        if not switches:
            assert torch.allclose(model.encoder(x), tokens, atol=1e-5)


def test_unet_small_trains_in_a_few_steps(tiny_backbone):
    torch.manual_seed(0)
    model = build_backbone(tiny_backbone("unet_small"))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.randn(1, 1, 64, 64, 64).cumsum(2) / 10  # smooth along one axis: learnable
    losses = []
    for _ in range(4):
        loss = (model(x)[1] - x).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "overrides,match",
    [
        (["name=resnet"], "backbone.name"),
        (["img_size=[60,64,64]"], "divisible by 16"),
        (["name=swin_unetr", "feature_size=16", "img_size=[64,64,64]"], "multiple of 12"),
        (["name=swin_unetr", "feature_size=12", "img_size=[64,64,64]", "swin_num_heads=[5,1,1,1]"], "divide"),
        (["name=unetr", "vit_hidden_size=30", "vit_num_heads=4"], "divisible by vit_num_heads"),
        (["img_size=[64,64]"], "3 positive ints"),
    ],
)
def test_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config(BackboneConfig, overrides=overrides)


@pytest.mark.parametrize("seed", [2, 3])
def test_bf16_norms_run_in_float32(seed, tiny_backbone):
    """Seeds 2 and 3 gave non-finite SwinUNETR bottleneck gradients under bf16 on CPU (see the next test)."""
    cfg = tiny_backbone("swin_unetr", bf16_autocast=True)
    torch.manual_seed(seed)
    model = build_backbone(cfg)
    plain = build_backbone(tiny_backbone("swin_unetr"))
    assert model.state_dict().keys() == plain.state_dict().keys()
    assert any(type(m).__name__.startswith("Float32") for m in model.modules())
    threads_before = torch.get_num_threads()
    try:
        for threads in (1, 2):  # the reduction order, and so the rounding, depends on the thread count
            torch.set_num_threads(threads)
            model.zero_grad()
            x = torch.randn(1, 1, 64, 64, 64)
            tokens, recon = model(x)
            ((recon - x).square().mean() + tokens.square().mean()).backward()
            assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    finally:
        torch.set_num_threads(threads_before)


def test_bf16_conv_smaller_than_kernel_runs_in_float32():
    """oneDNN's bf16 CPU weight gradient of a padded 3x3x3 conv over a depth-2 input is garbage that changes
    from call to call (SwinUNETR's 2x2x2 bottleneck at 64^3); such convs must compute in float32."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(48, 48, 3, padding=1, bias=False)
    x = torch.randn(1, 48, 2, 4, 4)
    conv(x).square().sum().backward()
    want = conv.weight.grad.clone()
    small_input_convs_in_float32(conv)
    for _ in range(4):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
            assert conv(torch.randn(1, 48, 4, 4, 4)).dtype == torch.bfloat16  # inputs >= kernel stay bf16
        assert y.dtype == torch.float32
        y.square().sum().backward()
        torch.testing.assert_close(conv.weight.grad, want)
