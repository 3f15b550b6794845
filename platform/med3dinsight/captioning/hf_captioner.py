"""The `transformers` captioner: any Hugging Face vision-language model, batched generation, as a Ray Data actor."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from med3dinsight.captioning.generation import pick_device, torch_dtype
from med3dinsight.captioning.model_source import resolve_model
from med3dinsight.config import load_config
from med3dinsight.config.caption import CaptionerConfig

log = logging.getLogger(__name__)


class HFCaptioner:
    """A vision-language model loaded with AutoProcessor / AutoModelForImageTextToText.

    Args:
        cfg: the captioner config (model id or local path, revision, decoding settings, seed, dtype).
        device: "cuda" or "cpu" (default: cuda when `cfg.num_gpus` > 0 and visible).

    Raises:
        ValueError: the model's processor has no chat template.
    """

    def __init__(self, cfg: CaptionerConfig, device: str | None = None) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.cfg = cfg
        self.device = device or pick_device(cfg.num_gpus)
        self.dtype = torch_dtype(cfg.dtype, self.device)
        source = resolve_model(cfg.model)
        self.processor = AutoProcessor.from_pretrained(source, revision=cfg.revision)
        if getattr(self.processor, "chat_template", None) is None:
            raise ValueError(f"captioner.model {cfg.model!r} has no chat template; pick an instruction-tuned VLM")
        self.processor.tokenizer.padding_side = "left"  # decoder-only batched generation pads on the left
        self.model = AutoModelForImageTextToText.from_pretrained(source, revision=cfg.revision, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.pad_id = self.processor.tokenizer.pad_token_id

    def chat_prompt(self, prompt: str) -> str:
        """The model's chat template around one image and `prompt`, ending where the answer starts."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, images_BHWC: Sequence[np.ndarray], prompts: Sequence[str]) -> tuple[list[str], list[int]]:
        """Captions and their generated token counts for a batch of uint8 RGB images (H, W, 3) and prompts."""
        texts = [self.chat_prompt(p) for p in prompts]
        pictures = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images_BHWC]
        inputs = self.processor(images=pictures, text=texts, return_tensors="pt", padding=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        kwargs: dict[str, Any] = dict(max_new_tokens=self.cfg.max_new_tokens, min_new_tokens=self.cfg.min_new_tokens,
                                      do_sample=self.cfg.do_sample, pad_token_id=self.pad_id)  # fmt: skip
        if self.cfg.do_sample:
            kwargs.update(temperature=self.cfg.temperature, top_p=self.cfg.top_p)
        torch.manual_seed(self.cfg.seed)
        with torch.inference_mode():
            output_BT = self.model.generate(**inputs, **kwargs)
        new_BT = output_BT[:, inputs["input_ids"].shape[1] :]
        if self.pad_id is None:
            counts = [new_BT.shape[1]] * len(texts)
        else:
            counts = (new_BT != self.pad_id).sum(dim=1).tolist()
        captions = self.processor.batch_decode(new_BT, skip_special_tokens=True)
        return [c.strip() for c in captions], [int(n) for n in counts]

    def caption_batch(
        self, images_BHWC: Sequence[np.ndarray], prompts: Sequence[str]
    ) -> tuple[list[str], list[int], list[str | None]]:
        """`generate`, isolating failures: when the batch fails, each item is retried alone and a failing
        item gets an empty caption and its error message instead of stopping the job.

        Returns:
            (captions, generated token counts, errors) with None for items that succeeded.
        """
        try:
            captions, counts = self.generate(images_BHWC, prompts)
            return captions, counts, [None] * len(captions)
        except Exception as e:  # a bad item must not lose the batch; retried one by one below
            log.warning("caption batch of %d failed (%s); retrying items one by one", len(prompts), e)
        captions, counts, errors = [], [], []
        for image, prompt in zip(images_BHWC, prompts, strict=True):
            try:
                (caption,), (count,) = self.generate([image], [prompt])
                captions.append(caption), counts.append(count), errors.append(None)
            except Exception as e:  # recorded in the row's error column; a rerun retries it
                captions.append(""), counts.append(0), errors.append(f"{type(e).__name__}: {e}"[:2000])
        return captions, counts, errors


class CaptionActor:
    """Ray Data actor: the model loads once in `__init__`; `__call__` captions a batch.

    Args:
        cfg_dict: `config_to_dict(CaptionerConfig)`, re-typed here (configs cross Ray boundaries as dicts).

    Batch in: "image" uint8 (B, H, W, 3), "prompt" str (B,). Adds "caption" str, "generated_tokens" int,
    "error" str or None, "caption_seconds" float (per-row share of the batch time).
    """

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        self.captioner = HFCaptioner(load_config(CaptionerConfig, data=cfg_dict))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        captions, counts, errors = self.captioner.caption_batch(list(batch["image"]), [str(p) for p in batch["prompt"]])
        seconds = (time.perf_counter() - start) / max(len(captions), 1)
        batch["caption"] = np.asarray(captions, dtype=object)
        batch["generated_tokens"] = np.asarray(counts, dtype=np.int64)
        batch["error"] = np.asarray(errors, dtype=object)
        batch["caption_seconds"] = np.full(len(captions), seconds)
        return batch
