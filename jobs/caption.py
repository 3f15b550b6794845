"""Caption tri-planar slices of the ingested volumes with a 2D multimodal LLM and embed them (captions/<run>/).

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python -m jobs.caption --config configs/caption.yaml store=<URL> [captioner.model=<id|path>] [run=<name>]

Locally (embedded Ray, tiny models from `med3d tiny-models storage/tiny_models`):
`python -m jobs.caption --config configs/caption.yaml configs/quickstart/caption.yaml store=storage/local`.
Exits 1 when no slice could be captioned (every row failed, or no volume to caption), 2 on a config error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from med3dinsight.captioning.pipeline import run_caption
from med3dinsight.captioning.preflight import preflight
from med3dinsight.config import ConfigError, parse_stage_args
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.ray_session import ray_session


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    cfg = parse_stage_args(CaptionConfig, argv, prog="jobs.caption")
    try:
        preflight(cfg)  # before Ray starts: a bad model path or image size costs no cluster time
        with ray_session(cfg.ray):
            summary = run_caption(cfg)
    except ConfigError as e:
        print(f"jobs.caption: config error: {e}", file=sys.stderr)
        return 2
    print(summary.format())
    print(f"captions: {summary.run_dir}/captions.parquet\ngallery:  {summary.run_dir}/gallery.html")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
