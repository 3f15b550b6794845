"""The caption stage on Ray Data: render tasks -> captioner actors -> embedder actors -> atomic part files.

    volumes (catalog, ok) --flat_map: slice + render (CPU)--> rows with images and prompts
      --map_batches: CaptionActor pool (or ray.data.llm vLLM)--> + caption, error
      --map_batches: EmbedActor pool--> + image/text embeddings
      --map_batches: write_part (task)--> captions/<run>/parts/*.parquet
    then, on the driver: captions.parquet + embedding matrices + gallery.html (see captioning/outputs.py)
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray

from med3dinsight.captioning.embedders import EmbedActor, embedder_record
from med3dinsight.captioning.gallery import gallery_html
from med3dinsight.captioning.generation import captioner_record, prompt_id
from med3dinsight.captioning.hf_captioner import CaptionActor
from med3dinsight.captioning.outputs import (
    RunPaths,
    atomic_write,
    check_run_embedder,
    consolidate,
    finished_keys,
    write_plan,
)
from med3dinsight.captioning.outputs import write_part as publish_part
from med3dinsight.captioning.preflight import preflight
from med3dinsight.captioning.quality import quality_flag
from med3dinsight.captioning.selection import select_volumes, slices_id
from med3dinsight.captioning.volume_slices import render_volume_slices
from med3dinsight.config import config_to_dict, load_config, save_config
from med3dinsight.config.caption import CaptionConfig, QualityConfig
from med3dinsight.io.store import Store

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CaptionSummary:
    """What one caption run did."""

    run_dir: str
    volumes: int = 0
    pending_volumes: int = 0
    """Volumes this run sent through the pipeline (0: everything was already captioned, no model loaded)."""
    skipped: list[str] = field(default_factory=list)
    """One message per volume that was not captioned (rejected by ingest, missing, ...)."""
    generated: int = 0
    """Rows written by this run (retries of failed rows included)."""
    failed: int = 0
    """Rows of this run whose generation or embedding failed (a rerun retries them)."""
    total_rows: int = 0
    quality: dict[str, int] = field(default_factory=dict)
    """Flags over the whole consolidated run."""

    @property
    def exit_code(self) -> int:
        """1 when the run holds no usable caption (nothing to caption, or every row failed), else 0."""
        return 0 if self.total_rows > self.quality.get("failed", 0) else 1

    def format(self) -> str:
        lines = [f"caption: {self.volumes} volumes, {self.generated} slices captioned this run "
                 f"({self.failed} failed), {self.total_rows} rows in {self.run_dir}",
                 "  quality: " + ", ".join(f"{k} {v}" for k, v in sorted(self.quality.items()))]  # fmt: skip
        lines += [f"  skipped: {m}" for m in self.skipped]
        return "\n".join(lines)


def run_caption(cfg: CaptionConfig) -> CaptionSummary:
    """Caption and embed the sampled slices of every accepted volume into captions/<cfg.run>/ of the store.

    Idempotent per (volume, plane, slice, captioner, prompt): rows that already have an error-free part row
    are not recomputed; failed rows are recorded with their error and retried by the next run.

    Raises:
        ConfigError: the config cannot work on this machine (see `preflight`), before any work.
        ValueError: the run already holds embeddings of different encoders.
    """
    preflight(cfg)
    store = Store(cfg.store, cfg.store_options)
    paths = RunPaths(store, cfg.run)
    volumes, skipped = select_volumes(store, cfg)
    for message in skipped:
        log.warning("caption: skipping %s", message)
    captioner, embedder = captioner_record(cfg.captioner, cfg.render), embedder_record(cfg.embedder)
    check_run_embedder(paths, embedder)
    save_config(cfg, paths.path("config.yaml"), store.fs)
    pid = prompt_id(cfg.captioner)
    done = finished_keys(paths, captioner["captioner_id"], pid)
    pending = [v for v in volumes if v.pending(done.get(v.volume_id, set()))]
    log.info("caption: %d volumes, %d with slices to caption", len(volumes), len(pending))
    results: list[dict[str, Any]] = []
    if pending:
        records = {**captioner, "prompt_id": pid, "backend": cfg.captioner.backend,
                   "image_encoder": embedder["image_encoder"], "text_encoder": embedder["text_encoder"]}  # fmt: skip
        ds = build_dataset(cfg, store, [(v.volume_id, done.get(v.volume_id, set())) for v in pending])
        ds = ds.map_batches(
            _write_batch, fn_kwargs={"paths": paths, "records": records, "quality": config_to_dict(cfg.quality)},
            batch_size=cfg.write_batch_size, num_cpus=cfg.write_num_cpus,
        )  # fmt: skip
        results = ds.take_all()
    rows = consolidate(paths, {k: embedder[k] for k in ("image_encoder", "text_encoder", "normalize")})
    if cfg.gallery.thumbnail_size and cfg.gallery.max_slices:
        page = gallery_html(rows, f"captions/{cfg.run}", cfg.gallery.max_slices)
        atomic_write(store, paths.path("gallery.html"), page.encode())
    return CaptionSummary(
        run_dir=paths.path(), volumes=len(volumes), pending_volumes=len(pending), skipped=skipped,
        generated=len(results), failed=sum(r["error"] is not None for r in results), total_rows=len(rows),
        quality=dict(Counter(r["quality"] for r in rows)),
    )  # fmt: skip


def build_dataset(cfg: CaptionConfig, store: Store, todo: list[tuple[str, set[tuple[str, int]]]]) -> ray.data.Dataset:
    """Render, caption and embed: a dataset of finished rows (not yet written)."""
    items = [{"volume_id": v, "done": json.dumps(sorted(d))} for v, d in todo]
    cfg_dict = config_to_dict(cfg)
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.flat_map(_render_item, fn_kwargs={"cfg_dict": cfg_dict, "store": store}, num_cpus=cfg.render_num_cpus)
    cap = cfg.captioner
    if cap.backend == "vllm":
        from med3dinsight.captioning.vllm_captioner import add_vllm_captions

        ds = add_vllm_captions(ds, cap)
    else:
        ds = ds.map_batches(
            CaptionActor, fn_constructor_kwargs={"cfg_dict": cfg_dict["captioner"]}, batch_size=cap.batch_size,
            compute=ray.data.ActorPoolStrategy(min_size=cap.concurrency[0], max_size=cap.concurrency[1]),
            num_gpus=cap.num_gpus, num_cpus=cap.num_cpus, **_accelerator(cap.accelerator_type),
        )  # fmt: skip
    emb = cfg.embedder
    return ds.map_batches(
        EmbedActor, fn_constructor_kwargs={"cfg_dict": cfg_dict["embedder"]}, batch_size=emb.batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=emb.concurrency[0], max_size=emb.concurrency[1]),
        num_gpus=emb.num_gpus, num_cpus=emb.num_cpus,
    )  # fmt: skip


def _accelerator(accelerator_type: str | None) -> dict[str, Any]:
    return {"accelerator_type": accelerator_type} if accelerator_type else {}


def _render_item(item: dict[str, Any], cfg_dict: dict[str, Any], store: Store) -> list[dict[str, Any]]:
    cfg = load_config(CaptionConfig, data=cfg_dict)
    done = {(plane, int(index)) for plane, index in json.loads(item["done"])}
    planned, rows = render_volume_slices(store, item["volume_id"], cfg, done)
    if cfg.slices.strategy == "foreground":
        write_plan(RunPaths(store, cfg.run), item["volume_id"], slices_id(cfg), planned)
    return rows


def _write_batch(
    batch: dict[str, np.ndarray], paths: RunPaths, records: dict[str, Any], quality: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Flag quality, publish the batch as one part file, return the keys with their flag and error."""
    quality_cfg = load_config(QualityConfig, data=quality)
    rows = []
    for i in range(len(batch["volume_id"])):
        error = _text(batch["error"][i])
        caption = _text(batch["caption"][i]) or ""
        rows.append({
            **{k: records[k] for k in ("captioner_id", "prompt_id", "backend", "model", "revision", "model_hash",
                                       "generation", "seed", "image_encoder", "text_encoder")},
            **{k: _scalar(batch[k][i]) for k in ("volume_id", "plane", "slice_index", "array_axis", "position",
                                                 "modality", "window", "prompt", "generated_tokens",
                                                 "caption_seconds", "thumbnail_png")},
            "caption": caption, "error": error, "quality": quality_flag(caption, quality_cfg, error),
            "image_embedding": batch["image_embedding"][i].tolist(),
            "text_embedding": batch["text_embedding"][i].tolist(),
        })  # fmt: skip
    publish_part(paths, rows)
    return {k: np.asarray([r[k] for r in rows], dtype=object) for k in ("volume_id", "plane", "slice_index",
                                                                         "quality", "error")}  # fmt: skip


def _text(value: Any) -> str | None:
    # An all-None column can come back from Arrow as null floats (NaN): treat those as missing text.
    if value is None or (isinstance(value, float | np.floating) and np.isnan(value)) or value == "":
        return None
    return str(value)


def _scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
