"""Tiny randomly initialised models built from configs (no download) for tests and the quickstart.

    med3d tiny-models storage/tiny_models    # writes <dir>/vlm (Llava) and <dir>/clip (CLIP)

They load through the same `from_pretrained` code path as real models and write meaningless text.
Both share one WordLevel vocabulary of radiology words, so the tiny VLM's captions are words the tiny
CLIP's tokenizer knows. Image processors are the `...Pil` classes (the others need torchvision).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:"]
WORDS = (
    "the a an of in and with no is are this slice image shows ct mr axial coronal sagittal scan view level "
    "liver spleen kidney kidneys lung lungs heart aorta spine vertebra bone brain ventricle skull pelvis "
    "bladder bowel stomach pancreas muscle fat soft tissue contrast lesion mass nodule cyst fluid normal "
    "abnormal enlarged small large left right anterior posterior superior inferior upper lower mid "
    "visible anatomy abnormality describe sentence one two volume % at"
).split()
# Llava's image grid: (image_size / patch_size)^2 image tokens replace each <image> in the prompt.
VISION_IMAGE_SIZE = 32
VISION_PATCH_SIZE = 8
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def tiny_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    """A lower-casing WordLevel tokenizer over SPECIAL + WORDS (unknown words -> <unk>)."""
    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    # Special tokens split text even without spaces (the processor expands <image> into a run of them).
    tokenizer.add_special_tokens(SPECIAL[:5])
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        model_max_length=max_length,
    )  # fmt: skip


def _image_processor() -> CLIPImageProcessorPil:
    return CLIPImageProcessorPil(
        size={"shortest_edge": VISION_IMAGE_SIZE}, crop_size={"height": VISION_IMAGE_SIZE, "width": VISION_IMAGE_SIZE}
    )


def _vision_config() -> dict[str, int]:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=VISION_IMAGE_SIZE, patch_size=VISION_PATCH_SIZE)  # fmt: skip


def build_tiny_vlm(folder: str | Path, seed: int = 0) -> Path:
    """Save a tiny random Llava (CLIP vision tower + Llama text model, hidden 32) and its processor.

    Args:
        folder: output folder (created).
        seed: torch seed of the random weights.

    Returns:
        The folder, loadable with AutoProcessor / AutoModelForImageTextToText.from_pretrained.
    """
    tokenizer = tiny_tokenizer(max_length=512)
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )  # fmt: skip
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**_vision_config()), text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=(VISION_IMAGE_SIZE // VISION_PATCH_SIZE) ** 2,
        vision_feature_select_strategy="default", vision_feature_layer=-1,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = 0
    processor = LlavaProcessor(
        image_processor=_image_processor(), tokenizer=tokenizer, patch_size=VISION_PATCH_SIZE,
        vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_clip(folder: str | Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """Save a tiny random CLIPModel (image and text towers, hidden 32) and its processor.

    Args:
        folder: output folder (created).
        seed: torch seed of the random weights.
        projection_dim: width of the image and text embeddings.

    Returns:
        The folder, loadable with AutoProcessor / AutoModel.from_pretrained.
    """
    tokenizer = tiny_tokenizer(max_length=64)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=2,
                         eos_token_id=3),
        vision_config=_vision_config(), projection_dim=projection_dim,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = CLIPModel(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=_image_processor(), tokenizer=tokenizer).save_pretrained(folder)
    return folder


def build_tiny_models(folder: str | Path, seed: int = 0) -> dict[str, Path]:
    """Both tiny models under `folder`: {"vlm": folder/vlm, "clip": folder/clip}."""
    folder = Path(folder)
    return {"vlm": build_tiny_vlm(folder / "vlm", seed), "clip": build_tiny_clip(folder / "clip", seed)}
