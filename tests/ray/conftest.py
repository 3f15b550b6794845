"""One embedded local Ray per test session (start-up costs ~10 s on 2 cores), private temp dir."""

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest
import ray

from med3dinsight.config.common import RayConfig
from med3dinsight.utils.ray_session import ray_session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    temp_dir = tempfile.mkdtemp(prefix="m3d-test-ray-")
    os.environ.pop("RAY_ADDRESS", None)
    with ray_session(RayConfig(num_cpus=2, temp_dir=temp_dir, progress_bars=False)):
        assert ray.is_initialized()
        yield
