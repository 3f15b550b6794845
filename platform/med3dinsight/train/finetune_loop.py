"""`finetune_loop(config)`: the Ray Train worker function of fine-tuning (DDP, resumable, best-by-metric).

Validates before the first step (the untrained baseline, logged as step 0), every `val_every` steps and at
the last. Rank 0 keeps the best model by `cfg.metric` in runs/<experiment>/best/state.pt.

Shape legend: B batch, K classes, D/H/W voxels.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
from torch import nn

from med3dinsight.config import load_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.io.store import Store
from med3dinsight.models.heads import build_task_net
from med3dinsight.train.checkpoints import checkpoint_from_state, flush_metrics, load_state, restore, save_state
from med3dinsight.train.finetune_data import LabelledItem, centre_crop, load_arrays, training_batch
from med3dinsight.train.metrics import all_gather_rows, dice_per_class, macro_auc, summarize_dice
from med3dinsight.train.optim import build_optimizer, build_scheduler
from med3dinsight.train.step import unwrap


def build_net(cfg: FinetuneConfig, encoder_dir: str | None) -> nn.Module:
    """The task network, its encoder loaded from `encoder_dir` (an export folder) or randomly initialised."""
    encoder = None
    if encoder_dir is not None:
        from med3dinsight.models.export import load_encoder

        encoder = load_encoder(encoder_dir).encoder.train()
    net = build_task_net(cfg.task, cfg.backbone, cfg.num_classes, encoder)
    if cfg.freeze_encoder:
        net.encoder.requires_grad_(False)
    return net


def validate(net: nn.Module, cfg: FinetuneConfig, val: list[tuple[np.ndarray, Any]], class_names: list[str],
             device: torch.device) -> dict[str, float]:  # fmt: skip
    """Validation metrics over this worker's volumes, gathered from every worker."""
    net.eval()
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"):
        if cfg.task == "segmentation":
            from monai.inferers import sliding_window_inference

            rows = []
            for image, label in val:
                x = torch.from_numpy(image)[None, None].to(device)
                logits = sliding_window_inference(x, cfg.backbone.img_size, cfg.sw_batch_size, net,
                                                  overlap=cfg.sw_overlap)  # fmt: skip
                rows.append(dice_per_class(logits[0].argmax(0).cpu(), torch.from_numpy(label), cfg.num_classes).numpy())
            dice = all_gather_rows(np.asarray(rows, dtype=np.float64).reshape(-1, cfg.num_classes - 1))
            metrics = summarize_dice(dice, class_names)
        else:
            rows = []
            for image, target in val:
                x = torch.from_numpy(centre_crop(image, cfg.backbone.img_size))[None, None].to(device)
                rows.append(np.concatenate([net(x).float().softmax(1)[0].cpu().numpy(), [target]]))
            table = all_gather_rows(np.asarray(rows, dtype=np.float64).reshape(-1, cfg.num_classes + 1))
            probs, targets = table[:, :-1], table[:, -1].astype(np.int64)
            metrics = {"val_accuracy": float((probs.argmax(1) == targets).mean()), "val_auc": macro_auc(probs, targets)}
    net.train()
    return metrics


def finetune_loop(config: dict[str, Any]) -> None:
    """Fine-tune until `max_steps` from the latest checkpoint (or from the encoder / random init).

    Args:
        config: {"cfg": FinetuneConfig dict, "train"/"val": [LabelledItem fields], "class_names": [...]}.
    """
    cfg = load_config(FinetuneConfig, data=config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    store = Store(cfg.store, cfg.store_options)
    torch.manual_seed(cfg.data.split_seed)
    from med3dinsight.train.finetune import resolve_encoder_dir  # runs on the worker's node (remote stores)

    net = build_net(cfg, resolve_encoder_dir(cfg)).to(device)
    optimizer = build_optimizer(net.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.max_steps)
    counters: dict[str, Any] = {"step": 0, "best": -1.0, "best_step": -1}  # metrics are >= 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            counters = restore(load_state(directory, device), net, optimizer, scheduler)
    net = ray.train.torch.prepare_model(net, move_to_device=device)
    train_items = [LabelledItem(**it) for it in config["train"]]
    val_items = [LabelledItem(**it) for it in config["val"]]
    mine = train_items[rank::world] or train_items
    volumes = [load_arrays(store, it, cfg.data.input.ct_window) for it in mine]
    targets = [it.target for it in mine]
    val = [(load_arrays(store, it, cfg.data.input.ct_window)[0], it.target) if cfg.task == "classification"
           else load_arrays(store, it, cfg.data.input.ct_window) for it in val_items[rank::world]]  # fmt: skip
    if cfg.task == "segmentation":
        from monai.losses import DiceCELoss

        loss_fn: nn.Module = DiceCELoss(to_onehot_y=True, softmax=True)
    else:
        loss_fn = nn.CrossEntropyLoss()
    pending: list[dict[str, Any]] = []
    if counters["step"] == 0:
        pending.append({"step": 0, "time": time.time(), **validate(net, cfg, val, config["class_names"], device)})
    while counters["step"] < cfg.max_steps:
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.data.split_seed, rank, counters["step"]])
        x, y = training_batch(rng, volumes, targets, cfg)
        x_t, y_t = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16 and device.type == "cuda"):
            loss = loss_fn(net(x_t).float(), y_t)
        loss.backward()
        if cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        counters["step"] += 1
        step = counters["step"]
        metrics: dict[str, Any] = {"step": step, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0],
                                   "step_s": time.perf_counter() - t0, "time": time.time()}  # fmt: skip
        do_val = step % cfg.val_every == 0 or step >= cfg.max_steps
        if do_val:
            metrics.update(validate(net, cfg, val, config["class_names"], device))
            counters["last_val"] = metrics[cfg.metric]  # carried in later reports (schedulers need it in each)
            if metrics[cfg.metric] > counters["best"]:
                counters.update(best=metrics[cfg.metric], best_step=step)
                if rank == 0:
                    _save_best(store, cfg.experiment, unwrap(net), metrics)
            metrics["best"] = counters["best"]
        pending.append(metrics)
        if do_val or step % cfg.checkpoint.every_steps == 0:
            ckpt = None
            if rank == 0:
                ckpt = checkpoint_from_state(unwrap(net), optimizer, scheduler, counters)
                flush_metrics(store, cfg.experiment, pending)
            pending = []
            ray.train.report(metrics, checkpoint=ckpt)
        elif step % cfg.report_every == 0:  # the same steps on every rank: report is collective
            ray.train.report({**metrics, cfg.metric: counters.get("last_val", 0.0), "best": counters["best"]})


def _save_best(store: Store, experiment: str, net: nn.Module, metrics: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        save_state(tmp, net, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), None,
                   {k: v for k, v in metrics.items() if isinstance(v, int | float)})  # fmt: skip
        store.fs.put_file(os.path.join(tmp, "state.pt"), store.path("runs", experiment, "best", "state.pt"))
