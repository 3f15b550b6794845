"""Deploy an exported encoder as a Ray Serve HTTP app (POST /v1/embed ...).

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python -m jobs.serve --config configs/serve.yaml store=<URL> model=<name|path> http.port=<int>

Through `ray job submit` (RAY_ADDRESS set) it deploys and returns, leaving the app on the cluster.
Locally (embedded Ray) it serves until interrupted:
`python -m jobs.serve --config configs/serve.yaml configs/quickstart/serve.yaml model=<path>`.
Exits 2 on a config error, 1 when the model cannot be found.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ray import serve

from med3dinsight.config import parse_stage_args
from med3dinsight.config.serve import ServeConfig
from med3dinsight.io.store import Store
from med3dinsight.serving.deploy import deploy, serve_until_interrupted
from med3dinsight.serving.runner import locate_model
from med3dinsight.utils.logs import setup_logging
from med3dinsight.utils.ray_session import ray_session


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    cfg = parse_stage_args(ServeConfig, argv, prog="jobs.serve")
    on_cluster = bool(cfg.ray.address or os.environ.get("RAY_ADDRESS"))
    try:
        locate_model(cfg.model, Store(cfg.store, cfg.store_options))  # fail before starting anything
    except ValueError as e:
        print(f"jobs.serve: {e}", file=sys.stderr)
        return 1
    with ray_session(cfg.ray):
        url = deploy(cfg)
        print(f"serving {cfg.model} at {url} (app {cfg.app_name!r}; OpenAPI at {url}/docs)", flush=True)
        if on_cluster:
            return 0  # the app is detached: it outlives this job on the cluster
        try:
            serve_until_interrupted()
        finally:
            serve.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
