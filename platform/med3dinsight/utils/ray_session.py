"""Start or join Ray for a stage, and always clean up."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from med3dinsight.config.common import RayConfig

log = logging.getLogger(__name__)


@contextmanager
def ray_session(cfg: RayConfig) -> Iterator[None]:
    """Join the cluster named by `cfg.address` or $RAY_ADDRESS, else start a private embedded local Ray.

    The embedded Ray gets its own temp dir (and $RAY_TMPDIR, which Ray Train also reads), so it can never
    join or disturb another Ray on the machine. A Ray that was already initialised is used as is and left
    running.
    """
    from ray.data import DataContext

    if ray.is_initialized():
        yield
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address)
    else:
        temp_dir = cfg.temp_dir or tempfile.mkdtemp(prefix="m3d-ray-")
        os.environ["RAY_TMPDIR"] = temp_dir
        ray.init(
            address="local",
            num_cpus=cfg.num_cpus,
            object_store_memory=cfg.object_store_memory_mb * 1024 * 1024,
            include_dashboard=cfg.include_dashboard,
            _temp_dir=temp_dir,
            configure_logging=False,
        )
    DataContext.get_current().enable_progress_bars = cfg.progress_bars
    log.info("Ray ready: %s", ray.cluster_resources())
    try:
        yield
    finally:
        ray.shutdown()
