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

from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.stage_runner import run_training_stage


def main(argv: Sequence[str] | None = None) -> int:
    from med3dinsight.train.pretrain import check_pretrain_inputs, run_pretrain

    setup_logging()
    return run_training_stage("jobs.pretrain", PretrainConfig, run_pretrain, argv, check=check_pretrain_inputs)


if __name__ == "__main__":
    sys.exit(main())
