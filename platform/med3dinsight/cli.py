"""`med3d`: run any stage locally, or the whole quickstart.

    med3d ingest --config configs/ingest.yaml input=... store=...
    med3d caption --config configs/caption.yaml configs/quickstart/caption.yaml store=...
    med3d pretrain --config configs/pretrain.yaml configs/quickstart/pretrain.yaml experiment=... store=...
    med3d finetune --config configs/finetune/seg.yaml configs/quickstart/finetune.yaml experiment=... encoder=...
    med3d sweep --config configs/quickstart/sweep.yaml experiment=... store=...
    med3d serve --config configs/serve.yaml configs/quickstart/serve.yaml model=...   # until Ctrl-C
    med3d tiny-models storage/tiny_models      # tiny random VLM + CLIP for the caption quickstart
    med3d sample-data storage/samples          # write the synthetic sample volumes
    med3d demo                                 # every stage on the sample data, on an embedded local Ray
    med3d embed FILE --url http://127.0.0.1:8000   # embed a volume with a deployed encoder (jobs.serve)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from med3dinsight.config import ConfigError, parse_stage_args
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.ray_session import ray_session
from med3dinsight.utils.stage_runner import run_training_stage


def _ingest(argv: Sequence[str]) -> int:
    from med3dinsight.ingest.pipeline import run_ingest

    cfg = parse_stage_args(IngestConfig, argv, prog="med3d ingest")
    with ray_session(cfg.ray):
        summary = run_ingest(cfg)
    print(summary.format())
    return summary.exit_code


def _caption(argv: Sequence[str]) -> int:
    from med3dinsight.captioning.pipeline import run_caption
    from med3dinsight.captioning.preflight import preflight
    from med3dinsight.config.caption import CaptionConfig

    cfg = parse_stage_args(CaptionConfig, argv, prog="med3d caption")
    try:
        preflight(cfg)
    except ConfigError as e:
        raise SystemExit(f"med3d caption: config error: {e}") from None
    with ray_session(cfg.ray):
        summary = run_caption(cfg)
    print(summary.format())
    return summary.exit_code


def _pretrain(argv: Sequence[str]) -> int:
    from med3dinsight.config.pretrain import PretrainConfig
    from med3dinsight.train.pretrain import check_pretrain_inputs, run_pretrain

    return run_training_stage("med3d pretrain", PretrainConfig, run_pretrain, argv, check=check_pretrain_inputs)


def _finetune(argv: Sequence[str]) -> int:
    from med3dinsight.config.finetune import FinetuneConfig
    from med3dinsight.train.finetune import run_finetune

    return run_training_stage("med3d finetune", FinetuneConfig, run_finetune, argv)


def _sweep(argv: Sequence[str]) -> int:
    from med3dinsight.config.sweep import SweepConfig
    from med3dinsight.tune.sweep import run_sweep

    return run_training_stage("med3d sweep", SweepConfig, run_sweep, argv)


def _serve(argv: Sequence[str]) -> int:
    from ray import serve

    from med3dinsight.config.serve import ServeConfig
    from med3dinsight.serving.deploy import deploy, serve_until_interrupted

    cfg = parse_stage_args(ServeConfig, argv, prog="med3d serve")
    with ray_session(cfg.ray):
        url = deploy(cfg)
        print(f"serving {cfg.model} at {url} (OpenAPI at {url}/docs); Ctrl-C stops", flush=True)
        try:
            serve_until_interrupted()
        finally:
            serve.shutdown()
    return 0


def _tiny_models(argv: Sequence[str]) -> int:
    from med3dinsight.captioning.tiny_models import build_tiny_models

    parser = argparse.ArgumentParser(prog="med3d tiny-models", description="Write a tiny random VLM and CLIP.")
    parser.add_argument("folder", nargs="?", default="storage/tiny_models")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, path in build_tiny_models(args.folder, args.seed).items():
        print(f"{name:5s} {path}")
    return 0


def _sample_data(argv: Sequence[str]) -> int:
    from med3dinsight.data.samples import write_sample_dataset

    parser = argparse.ArgumentParser(prog="med3d sample-data", description="Write the synthetic sample volumes.")
    parser.add_argument("folder", nargs="?", default="storage/samples")
    args = parser.parse_args(argv)
    paths = write_sample_dataset(args.folder)
    print(f"wrote {len(paths)} sample inputs (and their label maps) under {args.folder}")
    return 0


def _demo(argv: Sequence[str]) -> int:
    from med3dinsight.quickstart import run_demo

    parser = argparse.ArgumentParser(prog="med3d demo", description="The quickstart on an embedded local Ray.")
    parser.add_argument("--configs", default="configs", help="the repository's configs/ folder")
    parser.add_argument("--samples", default="storage/samples", help="where the sample volumes are written")
    parser.add_argument("--store", default="storage/local", help="store root")
    parser.add_argument("--tiny-models", default="storage/tiny_models", help="tiny captioner and CLIP folder")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port of the demo endpoint (127.0.0.1)")
    args = parser.parse_args(argv)
    try:
        outputs = run_demo(args.configs, args.samples, args.store, args.tiny_models, args.port)
    except ValueError as e:
        raise SystemExit(f"med3d demo: {e}") from None
    print("\noutputs:")
    for name, value in outputs.items():
        print(f"  {name:20s} {value}")
    return 0


def _embed(argv: Sequence[str]) -> int:
    from med3dinsight.serving.client import embed_command

    return embed_command(list(argv))


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "ingest": _ingest,
    "pretrain": _pretrain,
    "finetune": _finetune,
    "sweep": _sweep,
    "serve": _serve,
    "caption": _caption,
    "tiny-models": _tiny_models,
    "sample-data": _sample_data,
    "demo": _demo,
    "embed": _embed,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip())
        print(f"\ncommands: {', '.join(COMMANDS)}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    setup_logging()
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
