"""`ray job submit ... -- python -m jobs.ingest` against a real `ray start --head` cluster on loopback.

The cluster runs from this venv (a job's `python` is the one on the cluster's PATH), on free ports, with
a private temp dir, and is stopped by killing its process group (never `ray stop`).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from med3dinsight.io.catalog import read_catalog
from med3dinsight.io.store import Store

from .conftest import free_port
from .volumes import write_inputs

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    temp_dir = tempfile.mkdtemp(prefix="m3d-job-")
    dashboard = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": temp_dir}
    env.pop("RAY_ADDRESS", None)
    ports = {
        "--port": free_port(), "--dashboard-port": dashboard, "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(), "--node-manager-port": free_port(),
        "--object-manager-port": free_port(), "--ray-client-server-port": free_port(),
    }
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus=2", f"--temp-dir={temp_dir}",
           "--include-dashboard=true", "--dashboard-host=127.0.0.1", "--disable-usage-stats",
           f"--object-store-memory={512 * 1024 * 1024}", *[f"{k}={v}" for k, v in ports.items()]]
    head = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(f"{address}/api/version", timeout=2)
                break
            except OSError:
                if head.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"ray start failed: {head.stderr.read().decode()[-2000:]}") from None
                time.sleep(1)
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)


def test_ray_job_submit_ingest(cluster: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    address, env = cluster
    expected = write_inputs(tmp_path / "raw")
    store = tmp_path / "store"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
           "--runtime-env", "runtime_env.yaml", "--", "python", "-m", "jobs.ingest",
           "--config", "configs/ingest.yaml", f"input={tmp_path / 'raw'}", f"store={store}", "ray.progress_bars=false"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "succeeded" in out.stdout
    assert "2 ok" in out.stdout
    rows = read_catalog(Store(str(store)))
    assert {Path(r["source"]).name: r["status"] for r in rows} == expected
