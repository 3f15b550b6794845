"""Caption benchmark: the Ray Data caption-actor pipeline vs the same model in a plain loop; GPU throughput.

    OMP_NUM_THREADS=1 .venv/bin/python bench/caption.py [--slices 256] [--batch 16] [--tokens 32] [--rounds 5]
    .venv/bin/python bench/caption.py --gpu [--arch llava-7b|llava-2b] [--slices 256] [--batch 32] [--tokens 64]

CPU (default): the tiny random VLM captions the same rendered phantom slices (a) in a plain loop over
`HFCaptioner.caption_batch` and (b) through `ray.data ... map_batches(CaptionActor, ActorPoolStrategy(size=1))`,
one actor, same batch size and a fixed output length, in alternating rounds (median ratio). Rates are
steady state (from the first finished batch to the last, so model loading and Ray start-up are excluded).
Target: actor_pipeline_ratio >= 0.8. The tiny model takes milliseconds per batch, so this measures Ray's
per-batch overhead at its worst; a real VLM's seconds-long batches hide it.

--gpu: a randomly initialised Llava with the architecture and size of a real VLM (built from its config,
no download), bf16, fixed output length: slices/s, output tokens/s and the GPU busy fraction sampled by
nvidia-smi every 0.2 s (target >= 0.7). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import subprocess
import tempfile
import threading
import time

import numpy as np
import SimpleITK as sitk
import torch

from med3dinsight.captioning.hf_captioner import CaptionActor, HFCaptioner
from med3dinsight.captioning.render import render_slice
from med3dinsight.captioning.slicing import extract_slice
from med3dinsight.captioning.tiny_models import build_tiny_vlm
from med3dinsight.config import config_to_dict, load_config
from med3dinsight.config.caption import CaptionerConfig
from med3dinsight.config.common import RayConfig
from med3dinsight.data.phantoms import ct_phantom

# (vision tower, text model) dims of real VLMs: LLaVA-1.5-7B (CLIP ViT-L/14-336 + Vicuna-7B) and a 2B-class one.
ARCHS = {
    "llava-7b": (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14),
                 dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=32, vocab_size=32064)),
    "llava-2b": (dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                      image_size=336, patch_size=14),
                 dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000)),
}  # fmt: skip


def phantom_slices(n: int, size: int) -> list[np.ndarray]:
    """`n` rendered axial slices (uint8 (size, size, 3)) of a CT phantom (soft-tissue window)."""
    image, _ = ct_phantom((n, 96, 96), seed=1)
    volume = sitk.GetArrayFromImage(image)
    return [render_slice(*extract_slice(volume, image.GetSpacing(), image.GetDirection(), "axial", i),
                         (-160.0, 240.0), size) for i in range(n)]  # fmt: skip


def steady_rate(stamps: list[tuple[float, int]]) -> float:
    """Rows/s from the first finished batch to the last: (rows after the first batch) / elapsed."""
    (t0, _), (t1, _) = stamps[0], stamps[-1]
    return sum(n for _, n in stamps[1:]) / (t1 - t0)


def bench_cpu(args: argparse.Namespace) -> dict[str, float]:
    import ray

    from med3dinsight.utils.ray_session import ray_session

    torch.set_num_threads(1)
    folder = build_tiny_vlm(tempfile.mkdtemp(prefix="m3d-bench-vlm-"))
    atexit.register(shutil.rmtree, folder, True)
    cfg = load_config(CaptionerConfig, overrides=[
        f"model={folder}", f"max_new_tokens={args.tokens}", f"min_new_tokens={args.tokens}", "num_gpus=0",
        f"batch_size={args.batch}", "num_cpus=1"])  # fmt: skip
    images = phantom_slices(args.slices, 64)
    prompts = [f"axial ct slice {i}" for i in range(args.slices)]

    captioner = HFCaptioner(cfg)
    items = [{"image": im, "prompt": p} for im, p in zip(images, prompts, strict=True)]
    loop_rates, ray_rates, ray_totals = [], [], []
    # Rounds alternate loop and pipeline so that load from other users of the machine hits both alike.
    with ray_session(RayConfig(num_cpus=2, progress_bars=False)):
        for _ in range(args.rounds):
            loop_stamps = []
            for i in range(0, args.slices, args.batch):
                captions, _, _ = captioner.caption_batch(images[i : i + args.batch], prompts[i : i + args.batch])
                loop_stamps.append((time.perf_counter(), len(captions)))
            start = time.perf_counter()
            # One block per batch, as the stage's per-volume render tasks produce them.
            ds = ray.data.from_items(items, override_num_blocks=args.slices // args.batch).map_batches(
                CaptionActor, fn_constructor_kwargs={"cfg_dict": config_to_dict(cfg)}, batch_size=args.batch,
                compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1,
            )  # fmt: skip
            ray_stamps = [(time.perf_counter(), len(b["caption"])) for b in ds.iter_batches(batch_size=None)]
            ray_totals.append(time.perf_counter() - start)
            assert sum(n for _, n in ray_stamps) == args.slices
            loop_rates.append(steady_rate(loop_stamps))
            ray_rates.append(steady_rate(ray_stamps))
    ratios = [r / lo for r, lo in zip(ray_rates, loop_rates, strict=True)]
    return {
        "mode": "cpu", "slices": args.slices, "batch_size": args.batch, "new_tokens": args.tokens,
        "rounds": args.rounds, "loop_rows_per_s": round(float(np.median(loop_rates)), 2),
        "actor_rows_per_s": round(float(np.median(ray_rates)), 2),
        "actor_pipeline_ratio": round(float(np.median(ratios)), 3),
        "ratio_per_round": [round(r, 3) for r in ratios],
        "actor_end_to_end_s": round(float(np.median(ray_totals)), 2),
    }  # fmt: skip


class GpuBusySampler:
    """Samples `nvidia-smi --query-gpu=utilization.gpu` of GPU 0 in a thread; `mean` is the busy fraction."""

    def __init__(self, period_s: float = 0.2) -> None:
        self.period_s, self.samples, self._stop = period_s, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
        while not self._stop.is_set():
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
            if out.isdigit():
                self.samples.append(int(out) / 100.0)
            time.sleep(self.period_s)

    def __enter__(self) -> GpuBusySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def bench_gpu(args: argparse.Namespace) -> dict[str, float]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    from med3dinsight.captioning.tiny_models import CHAT_TEMPLATE, SPECIAL

    vision, text = ARCHS[args.arch]
    vocab = {w: i for i, w in enumerate(SPECIAL + [f"w{i}" for i in range(text["vocab_size"] - len(SPECIAL))])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(SPECIAL[:5])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")  # fmt: skip
    grid = (vision["image_size"] // vision["patch_size"]) ** 2
    config = LlavaConfig(vision_config=CLIPVisionConfig(**vision), text_config=LlamaConfig(
        **text, max_position_embeddings=4096, pad_token_id=0, bos_token_id=2, eos_token_id=3),
        image_token_index=4, image_seq_length=grid, vision_feature_select_strategy="default")  # fmt: skip
    side = vision["image_size"]
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(size={"shortest_edge": side}, crop_size={"height": side, "width": side}),
        tokenizer=tokenizer, patch_size=vision["patch_size"], vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE)  # fmt: skip
    folder = tempfile.mkdtemp(prefix="m3d-bench-gpu-")
    processor.save_pretrained(folder)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlavaForConditionalGeneration(config).eval()
    torch.set_default_dtype(torch.float32)
    params_b = sum(p.numel() for p in model.parameters()) / 1e9

    cfg = load_config(CaptionerConfig, overrides=[
        f"model={folder}", f"max_new_tokens={args.tokens}", f"min_new_tokens={args.tokens}", "num_gpus=1",
        f"batch_size={args.batch}"])  # fmt: skip
    captioner = HFCaptioner.__new__(HFCaptioner)  # the real generate path, with the in-memory random model
    captioner.cfg, captioner.device, captioner.dtype = cfg, "cuda", torch.bfloat16
    captioner.processor, captioner.model, captioner.pad_id = processor, model, None
    processor.tokenizer.padding_side = "left"
    images = phantom_slices(args.slices, side)
    prompts = ["w5 w6 w7 w8 w9 w10 w11 w12"] * args.slices
    captioner.generate(images[: args.batch], prompts[: args.batch])  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    tokens = 0
    with GpuBusySampler() as busy:
        start = time.perf_counter()
        for i in range(0, args.slices, args.batch):
            _, counts = captioner.generate(images[i : i + args.batch], prompts[i : i + args.batch])
            tokens += sum(counts)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    return {
        "mode": "gpu", "arch": args.arch, "params_b": round(params_b, 2), "gpu": torch.cuda.get_device_name(0),
        "slices": args.slices, "batch_size": args.batch, "new_tokens": args.tokens,
        "slices_per_s": round(args.slices / elapsed, 2), "output_tokens_per_s": round(tokens / elapsed, 1),
        "gpu_busy_fraction": round(busy.mean, 3), "busy_samples": len(busy.samples),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="GPU throughput of a real-size random VLM")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="llava-7b")
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5, help="CPU: alternating loop/pipeline rounds (median)")
    args = parser.parse_args()
    defaults = (256, 32, 64) if args.gpu else (256, 16, 32)
    args.slices, args.batch, args.tokens = (v if v is not None else d for v, d in
                                            zip((args.slices, args.batch, args.tokens), defaults, strict=True))
    print(json.dumps(bench_gpu(args) if args.gpu else bench_cpu(args)))


if __name__ == "__main__":
    main()
