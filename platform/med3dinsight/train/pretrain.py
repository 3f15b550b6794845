"""`run_pretrain(cfg)`: Med3DInsight pretraining on Ray Train, then the encoder export.

Outputs in the store:
    runs/<experiment>/config.yaml               the resolved config
    runs/<experiment>/checkpoint_*/state.pt     Ray Train checkpoints (latest `checkpoint.num_to_keep`)
    runs/<experiment>/metrics.jsonl, train_log.txt, loss_curves.png
    models/<export_name>/encoder.safetensors + encoder.json   (models.export format)
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from typing import Any

from med3dinsight.config import config_to_dict, save_config
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume
from med3dinsight.train.caption_index import CaptionIndex
from med3dinsight.train.checkpoints import load_state, read_metrics
from med3dinsight.train.pretrain_data import PretrainDatasetFactory, index_for
from med3dinsight.train.ray_config import run_config, scaling_config
from med3dinsight.train.run_report import write_run_report

log = logging.getLogger(__name__)
LOG_KEYS = ("step", "total", "ot_image", "ot_text", "recon", "plan_diag_mass", "lr", "items_per_s", "data_wait_s")
PLOT_KEYS = ("total", "ot_image", "ot_text", "recon", "plan_diag_mass", "items_per_s")


def check_pretrain_inputs(cfg: PretrainConfig) -> CaptionIndex:
    """Fail before any worker starts: missing captions, volumes smaller than the crop, embedding width.

    Raises:
        ValueError: (NoCaptionsError, CropTooLargeError or a width mismatch) naming the offending value.
    """
    index = index_for(cfg)
    if index.embedding_dim != cfg.model.psat.out_dim:
        raise ValueError(
            f"model.psat.out_dim={cfg.model.psat.out_dim} but caption run {cfg.data.caption_run!r} has image "
            f"embeddings of width {index.embedding_dim}: set model.psat.out_dim={index.embedding_dim}"
        )
    return index


def preprocessing_of(cfg: PretrainConfig, index: CaptionIndex) -> dict[str, Any]:
    """The preprocessing record of the export: the volumes' ingest records plus the training input policy."""
    store = Store(cfg.store, cfg.store_options)
    records: dict[str, Any] = {}
    for volume_id in index.volume_ids:
        record = open_volume(store, volume_id).attrs.get("preprocessing", {})
        records.setdefault(json.dumps(record, sort_keys=True), record)
    ingest = list(records.values())
    return {
        "ingest": ingest[0] if len(ingest) == 1 else ingest,
        "input": {"ct_window_hu": list(cfg.data.input.ct_window),
                  "scale": "CT: clip to the window, then to [0, 1]; MR: clip to [0, 1]"},
        "crop": {"size_zyx": cfg.crop_size, "slice_position": cfg.data.slice_position,
                 "num_slice_bins": cfg.model.psat.num_slice_bins},
        "num_volumes": len(index.volume_ids),
    }  # fmt: skip


def run_pretrain(cfg: PretrainConfig, callbacks: list[Any] | None = None) -> dict[str, str]:
    """Pretrain on the connected Ray cluster (resuming runs/<experiment>/ if it has checkpoints) and export.

    Args:
        cfg: the pretraining config.
        callbacks: Ray Train user callbacks (a sweep passes Tune's TuneReportCallback).

    Returns:
        Paths: run (folder), log, plot, metrics, model (export folder), checkpoint (latest).

    Raises:
        ValueError: on bad inputs (see `check_pretrain_inputs`).
        RuntimeError: when training failed after `checkpoint.max_failures` restarts.
    """
    from ray.train.torch import TorchTrainer

    index = check_pretrain_inputs(cfg)
    store = Store(cfg.store, cfg.store_options)
    save_config(cfg, store.path("runs", cfg.experiment, "config.yaml"), store.fs)
    cfg_dict = config_to_dict(cfg)
    trainer = TorchTrainer(
        _worker_entry,
        train_loop_config={"cfg": cfg_dict, "text_dim": int(index.text_emb.shape[1])},
        scaling_config=scaling_config(cfg.scaling),
        run_config=run_config(store, cfg.experiment, cfg.checkpoint, callbacks),
        datasets={"train": PretrainDatasetFactory(cfg_dict)},
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"pretraining {cfg.experiment!r} failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"pretraining {cfg.experiment!r} produced no checkpoint")
    paths = write_run_report(store, cfg.experiment, read_metrics(store, cfg.experiment), LOG_KEYS, PLOT_KEYS)
    model_dir = export_pretrained(cfg, result.checkpoint, preprocessing_of(cfg, index), int(index.text_emb.shape[1]))
    return {"run": store.path("runs", cfg.experiment), "log": paths["train_log.txt"], "plot": paths["loss_curves.png"],
            "metrics": paths["metrics.jsonl"], "model": model_dir, "checkpoint": result.checkpoint.path}  # fmt: skip


def export_pretrained(cfg: PretrainConfig, checkpoint: Any, preprocessing: dict[str, Any], text_dim: int) -> str:
    """Rebuild the model from a checkpoint and `save_encoder` it to models/<export_name>/ in the store."""
    from med3dinsight.models.export import save_encoder
    from med3dinsight.train.step import PretrainModule

    store = Store(cfg.store, cfg.store_options)
    module = PretrainModule(cfg.model, cfg.loss, text_dim)
    with checkpoint.as_directory() as directory:
        state = load_state(directory)
    module.load_state_dict(state["module"])
    name = cfg.export_name or cfg.experiment
    source = f"runs/{cfg.experiment} step {state['counters']['step']}"
    target = store.path("models", name)
    if store.is_local:
        save_encoder(module.model, target, preprocessing, source, include_psat=cfg.export_psat)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            save_encoder(module.model, tmp, preprocessing, source, include_psat=cfg.export_psat)
            for file in sorted(os.listdir(tmp), key=lambda f: f.endswith(".json")):  # record last
                store.fs.put_file(os.path.join(tmp, file), f"{target}/{file}")
    log.info("exported the encoder of %s to %s", cfg.experiment, target)
    return target


def _worker_entry(config: dict[str, Any]) -> None:
    from med3dinsight.train.pretrain_loop import pretrain_loop

    pretrain_loop(config)
