"""The caption models on CUDA in bfloat16 (skipped without a GPU)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from med3dinsight.captioning.embedders import SliceEmbedder
from med3dinsight.captioning.hf_captioner import HFCaptioner
from med3dinsight.captioning.tiny_models import build_tiny_models
from med3dinsight.config import load_config
from med3dinsight.config.caption import CaptionConfig

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_tiny_models_generate_and_embed_on_gpu_in_bf16(tmp_path: Path) -> None:
    models = build_tiny_models(tmp_path)
    cfg = load_config(CaptionConfig, overrides=[
        f"captioner.model={models['vlm']}", f"embedder.image.model={models['clip']}",
        f"embedder.text.model={models['clip']}", "captioner.num_gpus=1", "embedder.num_gpus=1",
        "captioner.max_new_tokens=8", "captioner.min_new_tokens=8"])  # fmt: skip
    captioner = HFCaptioner(cfg.captioner)
    assert captioner.device == "cuda" and next(captioner.model.parameters()).dtype == torch.bfloat16
    images = list(np.random.default_rng(0).integers(0, 255, (6, 64, 64, 3), dtype=np.uint8))
    captions, counts, errors = captioner.caption_batch(images, ["describe this ct slice"] * 6)
    assert errors == [None] * 6 and counts == [8] * 6 and all(isinstance(c, str) for c in captions)
    image_BD, text_BD = SliceEmbedder(cfg.embedder).embed(images, captions)
    assert image_BD.shape == (6, 16) and text_BD.shape == (6, 16) and np.isfinite(image_BD).all()
