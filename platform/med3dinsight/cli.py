"""`med3d`: run any stage locally, or the whole quickstart.

    med3d ingest --config configs/ingest.yaml input=... store=...
    med3d caption --config configs/caption.yaml configs/quickstart/caption.yaml store=...
    med3d tiny-models storage/tiny_models      # tiny random VLM + CLIP for the caption quickstart
    med3d sample-data storage/samples          # write the synthetic sample volumes
    med3d demo                                 # sample data -> ingest, on an embedded local Ray
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from med3dinsight.config import ConfigError, load_config, parse_stage_args
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.ray_session import ray_session


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
    from med3dinsight.data.samples import write_sample_dataset
    from med3dinsight.ingest.pipeline import run_ingest

    parser = argparse.ArgumentParser(prog="med3d demo", description="The quickstart on an embedded local Ray.")
    parser.add_argument("--configs", default="configs", help="the repository's configs/ folder")
    parser.add_argument("--samples", default="storage/samples", help="where the sample volumes are written")
    parser.add_argument("--store", default="storage/local", help="store root")
    args = parser.parse_args(argv)
    configs = Path(args.configs)
    if not (configs / "ingest.yaml").is_file():
        raise SystemExit(f"med3d demo: {configs / 'ingest.yaml'} not found; run it from the repository root")

    inputs = write_sample_dataset(args.samples)
    inputs.append(_truncated_copy(inputs[0], Path(args.samples) / "broken" / "truncated.nii.gz"))
    listing = Path(args.samples) / "inputs.txt"
    listing.write_text("\n".join(inputs) + "\n")
    try:
        cfg = load_config(
            IngestConfig,
            [configs / "ingest.yaml", configs / "quickstart" / "ingest.yaml"],
            [f"input={listing}", f"store={args.store}"],
        )
    except ConfigError as e:
        raise SystemExit(f"med3d demo: config error: {e}") from None
    with ray_session(cfg.ray):
        summary = run_ingest(cfg)
    print(summary.format())
    store = Path(args.store).resolve()
    print("\noutputs:")
    print(f"  volumes      {store / 'volumes'}")
    print(f"  catalog      {store / 'catalog' / 'volumes.parquet'}")
    print(f"  fingerprint  {store / 'catalog' / 'fingerprint.json'}")
    # The samples include a deliberately truncated file, so one rejection is expected here.
    return 0 if summary.statuses.get("ok", 0) > 0 else 1


def _truncated_copy(source: str, destination: Path) -> str:
    """A copy of `source` cut in half: shows how ingest rejects a broken input and goes on."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    data = Path(source).read_bytes()
    destination.write_bytes(data[: len(data) // 2])
    return str(destination)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "ingest": _ingest,
    "caption": _caption,
    "tiny-models": _tiny_models,
    "sample-data": _sample_data,
    "demo": _demo,
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
