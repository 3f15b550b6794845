"""Ingest raw CT/MRI volumes into the store as OME-Zarr, with a catalog and a dataset fingerprint.

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python -m jobs.ingest --config configs/ingest.yaml input=<path|glob|list.txt|URL> store=<URL>

Locally (embedded Ray): `python -m jobs.ingest --config configs/ingest.yaml input=... store=...`.
Exits 1 when every input was rejected or `max_failure_ratio` was passed, 2 on a config error.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from med3dinsight.config import parse_stage_args
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.ingest.pipeline import run_ingest
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.ray_session import ray_session


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    cfg = parse_stage_args(IngestConfig, argv, prog="jobs.ingest")
    with ray_session(cfg.ray):
        summary = run_ingest(cfg)
    print(summary.format())
    print(f"store: {cfg.store}")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
