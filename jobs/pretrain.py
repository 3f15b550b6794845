"""Pretrain the Med3DInsight encoder (partial-OT alignment to 2D slice embeddings) on Ray Train, then export it.

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python -m jobs.pretrain --config configs/pretrain.yaml configs/h200x8.yaml experiment=<name> store=<URL>

Locally (embedded Ray): `python -m jobs.pretrain --config configs/pretrain.yaml configs/quickstart/pretrain.yaml
experiment=<name> store=...`. Resubmitting the same experiment resumes from its latest checkpoint.
Exits 2 on a config error or bad inputs (no captions, crop larger than a volume), 1 when training failed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from med3dinsight.config import parse_stage_args
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.ray_session import ray_session


def main(argv: Sequence[str] | None = None) -> int:
    from med3dinsight.train.pretrain import check_pretrain_inputs, run_pretrain

    setup_logging()
    cfg = parse_stage_args(PretrainConfig, argv, prog="jobs.pretrain")
    try:
        check_pretrain_inputs(cfg)
    except ValueError as e:
        print(f"jobs.pretrain: {e}", file=sys.stderr)
        return 2
    with ray_session(cfg.ray):
        try:
            outputs = run_pretrain(cfg)
        except RuntimeError as e:
            print(f"jobs.pretrain: {e}", file=sys.stderr)
            return 1
    for name, path in outputs.items():
        print(f"{name:10s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
