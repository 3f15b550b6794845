"""The training half of the quickstart (`med3d demo`): label maps -> pretraining -> segmentation fine-tune.

Runs after ingest and caption on the sample data, on the connected (embedded) Ray, with the tiny configs
(configs/quickstart/*.yaml): a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import os
from typing import Any

from med3dinsight.captioning.reader import CaptionRun
from med3dinsight.config import load_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.io.store import Store
from med3dinsight.train.labels import ingest_labels, sample_label_pairs


def run_quickstart_training(
    store_root: str, configs_dir: str, samples_folder: str, inputs: list[str], caption_run: str = "default",
    overrides: tuple[str, ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """Ingest the samples' label maps, pretrain the tiny encoder, fine-tune it for segmentation.

    Args:
        store_root: the store the demo ingested and captioned into.
        configs_dir: the repository's configs/ folder.
        samples_folder: where `write_sample_dataset` wrote the samples (its labels/ sub-folder is read).
        inputs: the sample image inputs (as returned by `write_sample_dataset`).
        caption_run: the caption run to pretrain on.
        overrides: extra key=value overrides for both training configs (e.g. max_steps=4).

    Returns:
        Output paths: labels (catalog/labels.parquet), pretrain_run, pretrain_log, pretrain_plot, encoder,
        finetune_run, finetune_log, segmentation_model; and val_mean_dice, baseline_dice (step 0, untrained).
    """
    c = configs_dir
    store = Store(store_root)
    ingest_cfg = load_config(IngestConfig, [f"{c}/ingest.yaml", f"{c}/quickstart/ingest.yaml"],
                             ["input=unused", f"store={store_root}"])  # fmt: skip
    ingest_labels(sample_label_pairs(samples_folder, inputs), ingest_cfg, store)
    width = int(CaptionRun(store, caption_run).meta["image_width"])
    pretrain = load_config(PretrainConfig, [f"{c}/pretrain.yaml", f"{c}/quickstart/pretrain.yaml"], [
        f"store={store_root}", "experiment=quickstart-pretrain", f"data.caption_run={caption_run}",
        f"model.psat.out_dim={width}", *overrides])  # fmt: skip
    from med3dinsight.train.finetune import run_finetune
    from med3dinsight.train.pretrain import run_pretrain

    pre = run_pretrain(pretrain)
    finetune = load_config(FinetuneConfig, [f"{c}/finetune/seg.yaml", f"{c}/quickstart/finetune.yaml"], [
        f"store={store_root}", "experiment=quickstart-seg", "encoder=quickstart-pretrain", *overrides])  # fmt: skip
    fine = run_finetune(finetune)
    return {
        "labels": os.path.join(store.root, "catalog", "labels.parquet"),
        "pretrain_run": pre["run"], "pretrain_log": pre["log"], "pretrain_plot": pre["plot"], "encoder": pre["model"],
        "finetune_run": fine["run"], "finetune_log": fine["log"], "segmentation_model": fine["model"],
        "val_mean_dice": fine["best"].get("val_mean_dice"), "baseline_dice": fine["baseline"].get("val_mean_dice"),
    }  # fmt: skip
