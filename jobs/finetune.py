"""Fine-tune a pretrained encoder (or a random-init baseline) for segmentation or classification on Ray Train.

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python -m jobs.finetune --config configs/finetune/seg.yaml configs/h200x8.yaml experiment=<name> \
        encoder=<models/ name> store=<URL>

Classification: `--config configs/finetune/cls.yaml data.labels_csv=<csv> num_classes=<K> ...`. Locally add
configs/quickstart/finetune.yaml. Resubmitting the same experiment resumes. Exits 2 on a config error or bad
inputs (no labels, an encoder of another architecture), 1 when training failed.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.stage_runner import run_training_stage


def main(argv: Sequence[str] | None = None) -> int:
    from med3dinsight.train.finetune import run_finetune

    setup_logging()
    return run_training_stage("jobs.finetune", FinetuneConfig, run_finetune, argv)


if __name__ == "__main__":
    sys.exit(main())
