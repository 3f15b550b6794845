"""The pretraining step and module, the LR schedule, checkpoints; the step's loss falls in Train local mode."""

from pathlib import Path

import numpy as np
import pytest
import torch

from med3dinsight.config.model import BackboneConfig, LossConfig, ModelConfig, PSATConfig
from med3dinsight.config.train import OptimConfig
from med3dinsight.train.checkpoints import load_state, restore, save_state
from med3dinsight.train.optim import build_optimizer, build_scheduler, lr_factor
from med3dinsight.train.step import PretrainModule, pretrain_step

MODEL = ModelConfig(
    backbone=BackboneConfig(name="unet_small", img_size=[16, 16, 16], feature_size=4, num_levels=2),
    psat=PSATConfig(num_queries=4, dim=16, num_layers=1, num_heads=2, ffn_dim=32, num_slice_bins=8, out_dim=8),
)
LOSS = LossConfig(max_iter=100)


def tiny_batch(b: int = 4, text_dim: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(b, 1, 16, 16, 16, generator=g),
        "plane": torch.arange(b) % 3,
        "slice_pos": torch.rand(b, generator=g),
        "image_emb": torch.randn(b, 8, generator=g),
        "text_emb": torch.randn(b, text_dim, generator=g),
    }


def _train(steps: int, text_dim: int = 8, accum: int = 1) -> list[dict[str, float]]:
    torch.manual_seed(0)
    module = PretrainModule(MODEL, LOSS, text_dim)
    optimizer = build_optimizer(module.parameters(), OptimConfig(lr=3e-3))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=3e-3), steps)
    micro = [tiny_batch(4, text_dim, seed=i) for i in range(accum)]
    return [pretrain_step(module, optimizer, scheduler, micro, grad_clip=1.0) for _ in range(steps)]


def train_fn(config: dict) -> None:
    import ray.train

    for metrics in _train(config["steps"]):
        ray.train.report(metrics)


def test_loss_falls_in_train_local_mode() -> None:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(train_fn, train_loop_config={"steps": 12}, scaling_config=ScalingConfig(num_workers=0),
                           run_config=RunConfig(name="local-mode"))  # fmt: skip
    result = trainer.fit()
    assert result.error is None
    rows = _train(12)
    assert result.metrics["total"] == pytest.approx(rows[-1]["total"], rel=1e-4)  # the same loop, in local mode
    assert np.mean([r["total"] for r in rows[-3:]]) < 0.8 * np.mean([r["total"] for r in rows[:3]])
    assert all(0.0 <= r["plan_diag_mass"] <= 1.0 + 1e-5 for r in rows)


def test_two_width_text_branch_and_accumulation() -> None:
    rows = _train(6, text_dim=12, accum=2)
    assert rows[-1]["total"] < rows[0]["total"]
    module = PretrainModule(MODEL, LOSS, text_dim=12)
    assert module.text_proj is not None and module.loss.text_cost.log_w.shape == (12,)
    terms, emb = module(tiny_batch(4, 12))
    assert emb.shape == (4, 8) and set(terms) == {"ot_image", "ot_text", "recon", "total"}


@pytest.mark.parametrize(
    ("schedule", "warmup", "step", "factor"),
    [("constant", 0, 5, 1.0), ("constant", 4, 0, 0.25), ("constant", 4, 3, 1.0), ("cosine", 0, 0, 1.0),
     ("cosine", 0, 5, 0.5), ("cosine", 0, 10, 0.0), ("linear", 2, 6, 0.5)],
)  # fmt: skip
def test_lr_schedule(schedule: str, warmup: int, step: int, factor: float) -> None:
    assert lr_factor(step, 10, OptimConfig(schedule=schedule, warmup_steps=warmup)) == pytest.approx(factor)


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    module = PretrainModule(MODEL, LOSS)
    optimizer = build_optimizer(module.parameters(), OptimConfig(lr=1e-3))
    scheduler = build_scheduler(optimizer, OptimConfig(lr=1e-3, schedule="cosine"), 10)
    pretrain_step(module, optimizer, scheduler, [tiny_batch()])
    save_state(str(tmp_path), module, optimizer, scheduler, {"step": 1, "items": 4})
    other = PretrainModule(MODEL, LOSS)
    other_opt = build_optimizer(other.parameters(), OptimConfig(lr=1e-3))
    other_sched = build_scheduler(other_opt, OptimConfig(lr=1e-3, schedule="cosine"), 10)
    counters = restore(load_state(str(tmp_path)), other, other_opt, other_sched)
    assert counters == {"step": 1, "items": 4} and other_sched.last_epoch == scheduler.last_epoch
    for a, b in zip(module.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
