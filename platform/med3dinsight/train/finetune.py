"""`run_finetune(cfg)`: segmentation or classification fine-tuning on Ray Train, then the task export.

Outputs in the store:
    runs/<experiment>/config.yaml, split.json, checkpoint_*/, best/state.pt, metrics.jsonl, train_log.txt,
    loss_curves.png
    models/<export_name>/encoder.* + head.* (models.head_export format), from the best validation step
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from typing import Any

from med3dinsight.config import config_to_dict, save_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.io.store import Store
from med3dinsight.train.checkpoints import load_state, read_metrics
from med3dinsight.train.finetune_data import labelled_items, split_items
from med3dinsight.train.ray_config import run_config, scaling_config
from med3dinsight.train.run_report import write_run_report

ARCHITECTURE_IGNORED = ("gradient_checkpointing", "bf16_autocast")


def resolve_encoder_dir(cfg: FinetuneConfig) -> str | None:
    """A local folder holding the pretrained export named by `cfg.encoder` (downloaded from a remote store).

    Raises:
        ValueError: when there is no such export.
    """
    if cfg.encoder is None:
        return None
    if os.path.isfile(os.path.join(cfg.encoder, "encoder.json")):
        return cfg.encoder
    store = Store(cfg.store, cfg.store_options)
    remote = store.path("models", cfg.encoder)
    if not store.exists(f"{remote}/encoder.json"):
        raise ValueError(f"encoder={cfg.encoder!r}: no export at {remote} (nor a local folder with encoder.json)")
    if store.is_local:
        return remote
    local = tempfile.mkdtemp(prefix="m3d-encoder-")
    for name in ("encoder.json", "encoder.safetensors"):
        store.fs.get_file(f"{remote}/{name}", os.path.join(local, name))
    return local


def check_encoder_architecture(cfg: FinetuneConfig, encoder_dir: str) -> dict[str, Any]:
    """The export's record, after checking that its backbone is `cfg.backbone` (crop size aside for
    the sliding-window backbones).

    Raises:
        ValueError: naming every differing architecture key.
    """
    with open(os.path.join(encoder_dir, "encoder.json")) as f:
        record = json.load(f)
    ours = dataclasses.asdict(cfg.backbone)
    theirs = record.get("backbone", {})
    ignored = set(ARCHITECTURE_IGNORED) | ({"img_size"} if cfg.backbone.name != "unetr" else set())
    diff = {k: (theirs.get(k), ours[k]) for k in ours if k not in ignored and theirs.get(k) != ours[k]}
    if diff:
        detail = ", ".join(f"backbone.{k}: encoder has {a!r}, config has {b!r}" for k, (a, b) in sorted(diff.items()))
        raise ValueError(f"encoder {cfg.encoder!r} was trained with a different architecture: {detail}")
    return record


def run_finetune(cfg: FinetuneConfig, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fine-tune on the connected Ray cluster (resuming runs/<experiment>/) and export the best model.

    Args:
        cfg: the fine-tuning config.
        callbacks: Ray Train user callbacks (a sweep passes Tune's TuneReportCallback).

    Returns:
        Paths (run, log, plot, metrics, model) and `best` (the best validation metrics).

    Raises:
        ValueError: bad inputs (no labels, encoder of another architecture, too few volumes).
        RuntimeError: training failed after `checkpoint.max_failures` restarts.
    """
    from ray.train.torch import TorchTrainer

    store = Store(cfg.store, cfg.store_options)
    encoder_dir = resolve_encoder_dir(cfg)
    encoder_record = check_encoder_architecture(cfg, encoder_dir) if encoder_dir else {}
    items, class_names = labelled_items(cfg, store)
    train, val = split_items(items, cfg.data.val_fraction, cfg.data.split_seed, cfg.data.labelled_fraction)
    run = store.path("runs", cfg.experiment)
    save_config(cfg, f"{run}/config.yaml", store.fs)
    split = {"train": [dataclasses.asdict(i) for i in train], "val": [dataclasses.asdict(i) for i in val]}
    store.fs.pipe_file(f"{run}/split.json", json.dumps(split, indent=2).encode())
    trainer = TorchTrainer(
        _worker_entry,
        train_loop_config={"cfg": config_to_dict(cfg), **split, "class_names": class_names},
        scaling_config=scaling_config(cfg.scaling),
        run_config=run_config(store, cfg.experiment, cfg.checkpoint, callbacks),
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"fine-tuning {cfg.experiment!r} failed: {result.error}") from result.error
    rows = read_metrics(store, cfg.experiment)
    keys = ("step", "loss", "lr", cfg.metric, "best", "step_s")
    paths = write_run_report(store, cfg.experiment, rows, keys, ("loss", cfg.metric))
    best = export_best(cfg, class_names, encoder_record)
    return {"run": run, "log": paths["train_log.txt"], "plot": paths["loss_curves.png"],
            "metrics": paths["metrics.jsonl"], "model": best.pop("model"), "best": best,
            "baseline": next((r for r in rows if r["step"] == 0), {})}  # fmt: skip


def export_best(cfg: FinetuneConfig, class_names: list[str], encoder_record: dict[str, Any]) -> dict[str, Any]:
    """Export the best validation model (runs/<experiment>/best/) to models/<export_name>/."""
    from med3dinsight.models.head_export import save_task_net
    from med3dinsight.train.finetune_loop import build_net

    store = Store(cfg.store, cfg.store_options)
    with tempfile.TemporaryDirectory() as tmp:
        store.fs.get_file(store.path("runs", cfg.experiment, "best", "state.pt"), os.path.join(tmp, "state.pt"))
        state = load_state(tmp)
    net = build_net(dataclasses.replace(cfg, encoder=None), None)
    net.load_state_dict(state["module"])
    metrics = {k: v for k, v in state["counters"].items() if k.startswith("val_") or k == "step"}
    finetune_input = {"ct_window_hu": list(cfg.data.input.ct_window), "crop_zyx": cfg.backbone.img_size}
    preprocessing = {**encoder_record.get("preprocessing", {}), "finetune_input": finetune_input}
    name = cfg.export_name or cfg.experiment
    target = store.path("models", name)
    source = f"runs/{cfg.experiment} step {metrics.get('step')} (encoder: {cfg.encoder or 'random init'})"
    args = (net, cfg.task, cfg.backbone)
    kwargs = {"num_classes": cfg.num_classes, "class_names": class_names, "preprocessing": preprocessing,
              "metrics": metrics, "source_run": source}  # fmt: skip
    if store.is_local:
        save_task_net(*args, target, **kwargs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            save_task_net(*args, tmp, **kwargs)
            for file in sorted(os.listdir(tmp), key=lambda f: f.endswith(".json")):
                store.fs.put_file(os.path.join(tmp, file), f"{target}/{file}")
    return {"model": target, **metrics}


def _worker_entry(config: dict[str, Any]) -> None:
    from med3dinsight.train.finetune_loop import finetune_loop

    finetune_loop(config)
