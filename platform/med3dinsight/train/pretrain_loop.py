"""`pretrain_loop(config)`: the Ray Train worker function of pretraining (DDP, resumable).

Each optimiser step takes `grad_accum` batches of `data.batch_size` items from this worker's shard of the
stream and logs its metrics (reported to Ray Train every `report_every` steps); every
`checkpoint.every_steps` steps (and at the last) it reports a
checkpoint: model + loss weights, optimiser, scheduler, step, data position (items consumed).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray.train
import ray.train.torch
import torch

from med3dinsight.config import load_config
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.io.store import Store
from med3dinsight.train.checkpoints import checkpoint_from_state, flush_metrics, load_state, restore
from med3dinsight.train.optim import build_optimizer, build_scheduler
from med3dinsight.train.pretrain_data import items_per_step, write_data_position
from med3dinsight.train.step import PretrainModule, pretrain_step, to_device, unwrap

log = logging.getLogger(__name__)


def pretrain_loop(config: dict[str, Any]) -> None:
    """Train until `max_steps` from the latest checkpoint (or from scratch).

    Args:
        config: {"cfg": the PretrainConfig as a plain dict, "text_dim": width of the text embeddings}.
    """
    cfg = load_config(PretrainConfig, data=config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    torch.manual_seed(cfg.data.seed)
    module = PretrainModule(cfg.model, cfg.loss, config.get("text_dim")).to(device)
    optimizer = build_optimizer(module.parameters(), cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.optim, cfg.max_steps)
    counters = {"step": 0, "items": 0, "restarts": 0}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            counters = restore(load_state(directory, device), module, optimizer, scheduler)
        counters["restarts"] = counters.get("restarts", 0) + 1
        if rank == 0:
            log.info("resuming %s at step %d (%d items consumed)", cfg.experiment, counters["step"], counters["items"])
    ddp_kwargs = {"find_unused_parameters": cfg.loss.kind == "clip"}  # clip leaves the OT cost weights unused
    module = ray.train.torch.prepare_model(module, move_to_device=device, parallel_strategy_kwargs=ddp_kwargs)
    store = Store(cfg.store, cfg.store_options)
    if counters["step"] >= cfg.max_steps:
        ray.train.report({"step": counters["step"], "finished": 1}, checkpoint=None)
        return

    shard = ray.train.get_dataset_shard("train")
    batches = iter(shard.iter_torch_batches(batch_size=cfg.data.batch_size, drop_last=True,
                                             prefetch_batches=cfg.data.prefetch_batches))  # fmt: skip
    pending: list[dict[str, Any]] = []
    t_last = time.perf_counter()
    while counters["step"] < cfg.max_steps:
        t_wait = time.perf_counter()
        try:
            micro = [to_device(next(batches), device) for _ in range(cfg.grad_accum)]
        except StopIteration:
            log.warning("rank %d: the item stream ended at step %d", rank, counters["step"])
            break
        data_wait = time.perf_counter() - t_wait
        metrics = pretrain_step(module, optimizer, scheduler, micro, cfg.optim.grad_clip,
                                bf16=cfg.bf16 and device.type == "cuda")  # fmt: skip
        counters["step"] += 1
        counters["items"] += items_per_step(cfg, world)
        now = time.perf_counter()
        metrics.update(
            step=counters["step"], items=counters["items"], world_size=world, restarts=counters["restarts"],
            step_s=now - t_last, data_wait_s=data_wait, items_per_s=items_per_step(cfg, world) / (now - t_last),
            gpu_mem_gb=torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0,
            time=time.time(),
        )  # fmt: skip
        t_last = now
        pending.append(metrics)
        last = counters["step"] >= cfg.max_steps
        ckpt = None
        if counters["step"] % cfg.checkpoint.every_steps == 0 or last:
            if rank == 0:
                ckpt = checkpoint_from_state(unwrap(module), optimizer, scheduler, counters)
                flush_metrics(store, cfg.experiment, pending)
            pending = []
            ray.train.report(metrics, checkpoint=ckpt)
            if rank == 0:  # after the report: a restart before it resumes from the previous checkpoint
                write_data_position(store, cfg.experiment, counters["items"], counters["step"])
        elif counters["step"] % cfg.report_every == 0:  # the same steps on every rank: report is collective
            ray.train.report(metrics)
