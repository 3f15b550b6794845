"""A tiny training store for the Ray training tests: sample phantoms ingested with their label maps, and a
synthetic caption run (the caption stage's layout, embeddings computed from the slices)."""

import os
import signal
import time
from pathlib import Path

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.data.samples import write_sample_dataset
from med3dinsight.ingest.pipeline import run_ingest
from med3dinsight.io.store import Store
from med3dinsight.train.labels import ingest_labels, sample_label_pairs
from med3dinsight.train.synthetic import write_synthetic_captions

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
EMBEDDING_DIM = 8


def build_train_store(root: Path) -> Store:
    """5 phantoms (4 CT, 1 MR; 22..60 voxels per axis at 1.5 mm) with label maps (labels 0..3), captions."""
    inputs = write_sample_dataset(str(root / "samples"), size=48, include_mni=False)
    (root / "inputs.txt").write_text("\n".join(inputs) + "\n")
    overrides = [f"input={root / 'inputs.txt'}", f"store={root / 'store'}", "zarr.chunk=[32,32,32]"]
    cfg = load_config(IngestConfig, [CONFIGS / "ingest.yaml", CONFIGS / "quickstart/ingest.yaml"], overrides)
    assert run_ingest(cfg).exit_code == 0
    store = Store(str(root / "store"))
    rows = ingest_labels(sample_label_pairs(str(root / "samples"), inputs), cfg, store)
    assert [r["status"] for r in rows] == ["ok"] * 5
    write_synthetic_captions(store, dim=EMBEDDING_DIM, slices_per_plane=4)
    return store


def train_worker_pids() -> list[int]:
    """PIDs of the Ray Train worker processes under this test process (our local Ray only)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    if b"RayTrainWorker" in f.read():
                        found.append(child)
            except OSError:
                pass
    return found


def kill_a_worker_when(path: Path, timeout_s: float = 240.0) -> dict[str, int]:
    """Wait for `path` to exist, then SIGKILL one Ray Train worker; returns {"pid": ...} (0 if none was found)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.1)
    pids = train_worker_pids()
    if pids:
        os.kill(pids[-1], signal.SIGKILL)
    return {"pid": pids[-1] if pids else 0}
