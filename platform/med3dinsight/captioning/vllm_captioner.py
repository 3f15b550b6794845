"""The `vllm` captioner: the same prompt and model fields through ray.data.llm with a vLLM engine.

Needs the `vllm` package on the GPU workers (imported by Ray Data LLM when the engine starts).
Not exercised by the CPU test suite; see tests/gpu/test_caption_gpu.py.
"""

from __future__ import annotations

import base64
from typing import Any

import ray.data

from med3dinsight.captioning.model_source import resolve_model
from med3dinsight.captioning.render import png_bytes
from med3dinsight.config.caption import CaptionerConfig


def sampling_params(cfg: CaptionerConfig) -> dict[str, Any]:
    """vLLM SamplingParams fields equivalent to the transformers settings (temperature 0 = greedy)."""
    params: dict[str, Any] = {"max_tokens": cfg.max_new_tokens, "min_tokens": cfg.min_new_tokens, "seed": cfg.seed}
    if cfg.do_sample:
        params.update(temperature=cfg.temperature, top_p=cfg.top_p)
    else:
        params["temperature"] = 0.0
    return params


def chat_messages(image_HWC: Any, prompt: str) -> list[dict[str, Any]]:
    """OpenAI-style messages with the slice as a PNG data URL followed by the prompt."""
    url = "data:image/png;base64," + base64.b64encode(png_bytes(image_HWC)).decode()
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": prompt}]}]  # fmt: skip


def add_vllm_captions(ds: ray.data.Dataset, cfg: CaptionerConfig) -> ray.data.Dataset:
    """Caption every row of `ds` ("image", "prompt") with vLLM; adds caption, generated_tokens, error,
    caption_seconds (0: vLLM batches continuously, no per-row time)."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    engine_kwargs = {"dtype": "bfloat16" if cfg.dtype == "auto" else cfg.dtype, **cfg.engine_kwargs}
    if cfg.revision:
        engine_kwargs.setdefault("revision", cfg.revision)
    config = vLLMEngineProcessorConfig(
        model_source=resolve_model(cfg.model),
        engine_kwargs=engine_kwargs,
        batch_size=cfg.batch_size,
        concurrency=tuple(cfg.concurrency) if cfg.concurrency[0] != cfg.concurrency[1] else cfg.concurrency[0],
        accelerator_type=cfg.accelerator_type,
        prepare_multimodal_stage=True,
        should_continue_on_error=True,
    )
    params = sampling_params(cfg)

    def preprocess(row: dict[str, Any]) -> dict[str, Any]:
        return {**row, "messages": chat_messages(row["image"], str(row["prompt"])), "sampling_params": params}

    def postprocess(row: dict[str, Any]) -> dict[str, Any]:
        error = row.get("__inference_error__") or None
        tokens = row.get("generated_tokens")
        keep = {k: row[k] for k in row if k not in ("messages", "sampling_params", "generated_text",
                                                      "generated_tokens", "__inference_error__")}  # fmt: skip
        return {**keep, "caption": (row.get("generated_text") or "").strip(),
                "generated_tokens": len(tokens) if tokens is not None else 0,
                "error": str(error) if error else None, "caption_seconds": 0.0}  # fmt: skip

    return build_processor(config, preprocess=preprocess, postprocess=postprocess)(ds)
