"""Sweep a training stage's hyperparameters with Ray Tune (ASHA), each trial a Ray Train run.

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python -m jobs.sweep --config configs/sweep.yaml experiment=<name> store=<URL>

Locally: `python -m jobs.sweep --config configs/quickstart/sweep.yaml experiment=<name> store=...`.
Resubmitting the same experiment resumes unfinished trials. Writes runs/<experiment>/results.csv and
best_config.yaml. Exits 2 on a config error, 1 when no trial produced the metric.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from med3dinsight.config.sweep import SweepConfig
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.stage_runner import run_training_stage


def main(argv: Sequence[str] | None = None) -> int:
    from med3dinsight.tune.sweep import run_sweep

    setup_logging()
    return run_training_stage("jobs.sweep", SweepConfig, run_sweep, argv)


if __name__ == "__main__":
    sys.exit(main())
