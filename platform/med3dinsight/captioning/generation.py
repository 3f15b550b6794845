"""Prompts, generation settings and the ids that make caption rows idempotent (pure)."""

from __future__ import annotations

import json
from typing import Any

import torch

from med3dinsight.captioning.model_source import model_identity, short_hash
from med3dinsight.config.caption import CaptionerConfig, RenderConfig


def build_prompt(template: str, modality: str, plane: str, position: float) -> str:
    """The prompt of one slice: `template` with {modality}, {plane} and {position_pct} (0-100, integer) filled."""
    return template.format(modality=modality, plane=plane, position_pct=round(100 * position))


def prompt_id(cfg: CaptionerConfig) -> str:
    """`<prompt_id>-<hash of the template>`: editing the template makes new rows instead of reusing old ones."""
    return f"{cfg.prompt_id}-{short_hash(cfg.prompt)[:8]}"


def generation_settings(cfg: CaptionerConfig) -> dict[str, Any]:
    """The decoding settings recorded with every row (sampling ones only when sampling)."""
    settings: dict[str, Any] = {
        "max_new_tokens": cfg.max_new_tokens, "min_new_tokens": cfg.min_new_tokens, "do_sample": cfg.do_sample,
    }  # fmt: skip
    if cfg.do_sample:
        settings.update(temperature=cfg.temperature, top_p=cfg.top_p)
    return settings


def render_settings(render: RenderConfig) -> dict[str, Any]:
    """The rendering choices a caption depends on (the CT window actually used, not the whole preset table)."""
    return {
        "image_size": render.image_size,
        "ct_window": [render.ct_window, *render.ct_windows[render.ct_window]],
        "mr_percentiles": list(render.mr_percentiles),
    }


def captioner_record(cfg: CaptionerConfig, render: RenderConfig) -> dict[str, Any]:
    """Model identity, settings and `captioner_id` (a hash of everything that changes a caption but the prompt).

    Hashes a local model folder: call once per run on the driver, not per batch.
    """
    identity = model_identity(cfg.model, cfg.revision)
    settings = generation_settings(cfg)
    # A local folder is identified by its content, so moving it (another mount on the cluster) keeps the rows.
    model_key = identity["model_hash"] or [identity["model"], identity["revision"]]
    key = json.dumps([model_key, settings, cfg.seed, render_settings(render)], sort_keys=True)
    return {**identity, "generation": json.dumps(settings, sort_keys=True), "seed": cfg.seed,
            "captioner_id": short_hash(key)}  # fmt: skip


def torch_dtype(name: str, device: str) -> torch.dtype:
    """`auto` is bfloat16 on a GPU and float32 on CPU; otherwise the named dtype."""
    if name == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def pick_device(num_gpus: float) -> str:
    """cuda when the actor was given a GPU and one is visible, else cpu."""
    return "cuda" if num_gpus > 0 and torch.cuda.is_available() else "cpu"
