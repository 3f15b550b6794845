"""Checks of a caption config against this machine before any work: model folders, image size, extras."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from typing import Any

from med3dinsight.captioning.model_source import is_local, resolve_model
from med3dinsight.config import ConfigError
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.io.store import Store

log = logging.getLogger(__name__)


def encoder_input_size(model: str, revision: str | None) -> int | None:
    """The square input side in pixels of a model's vision tower, from its config.json (None when unknown).

    Local folders are read directly; hub ids only from the local Hugging Face cache (no download).
    """
    config: dict[str, Any] | None = None
    if is_local(model):
        path = os.path.join(resolve_model(model), "config.json")
        if os.path.isfile(path):
            with open(path) as f:
                config = json.load(f)
    else:
        try:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model, revision=revision, local_files_only=True).to_dict()
        except Exception:  # not cached here: the size is checked when the actor loads the model
            return None
    if config is None:
        return None
    vision = config.get("vision_config") or config
    size = vision.get("image_size") if isinstance(vision, dict) else None
    if isinstance(size, list | tuple):
        size = max(size)
    return int(size) if isinstance(size, int | float) else None


def preflight(cfg: CaptionConfig) -> None:
    """Refuse a config that cannot work here, naming the setting.

    Raises:
        ConfigError: a local model folder that does not exist; `render.image_size` smaller than the input
            size of the captioner's or the image encoder's vision tower (the processor would upsample and
            invent detail); a store without an ingest catalog; an optional backend whose extra is not installed.
    """
    models = [
        ("captioner.model", cfg.captioner.model, cfg.captioner.revision, True),
        ("embedder.image.model", cfg.embedder.image.model, cfg.embedder.image.revision, True),
        ("embedder.text.model", cfg.embedder.text.model, cfg.embedder.text.revision, False),
    ]
    for key, model, revision, sees_images in models:
        if is_local(model):
            try:
                path = resolve_model(model)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
            if not os.path.isdir(path):
                raise ConfigError(f"{key}: local model folder {path!r} does not exist (from {model!r})")
        if sees_images:
            size = encoder_input_size(model, revision)
            if size is not None and cfg.render.image_size < size:
                raise ConfigError(
                    f"render.image_size={cfg.render.image_size} is smaller than the {size}px input of {key} "
                    f"{model!r}; render at least {size}px"
                )
    store = Store(cfg.store, cfg.store_options)
    if not store.exists(store.catalog_path):
        raise ConfigError(f"store={cfg.store!r} has no {store.catalog_path}: run the ingest stage into it first")
    extras = [("vllm", cfg.captioner.backend == "vllm", "captioner.backend=vllm", "vllm")]
    uses_open_clip = "open_clip" in (cfg.embedder.image.backend, cfg.embedder.text.backend)
    extras.append(("open_clip", uses_open_clip, "embedder.*.backend=open_clip", "open_clip_torch"))
    for module, used, key, package in extras:
        if used and importlib.util.find_spec(module) is None:
            raise ConfigError(f"{key} needs the optional package {package!r}: pip install {package}")
