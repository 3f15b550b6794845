"""Serve benchmark: HTTP + Serve overhead, cross-caller batching gain, errors under load (one JSON line last).

    OMP_NUM_THREADS=1 .venv/bin/python bench/serve.py [--requests-c16 320] [--load-requests 1000]

Side by side in one run, on an embedded local Ray, loopback only, the small encoder on CPU:
- p50_overhead_ms_c1: p50 of POST /v1/embed {"volume_id"} (1 client) minus p50 of the same work in-process
  (`from_store` + `embed_batch` on the same stored, preprocessed volume). Target <= 10 ms.
- batching_gain_c16: requests/s at 16 concurrent clients, batching on vs off (two apps deployed side by side
  from one config, `batching.enabled` flipped). Target >= 1.5.
- errors_under_load: 5xx over `--load-requests` requests at 16 clients on the batching app. Target 0.
Also reported: the upload path (same file as multipart) over in-process `from_upload` + embed.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402
import torch  # noqa: E402
from ray import serve  # noqa: E402

from med3dinsight.config import load_config  # noqa: E402
from med3dinsight.config.common import RayConfig  # noqa: E402
from med3dinsight.config.model import BackboneConfig, ModelConfig, PSATConfig  # noqa: E402
from med3dinsight.config.serve import ServeConfig  # noqa: E402
from med3dinsight.ingest.volume import ingest_volume  # noqa: E402
from med3dinsight.io.sources import Source  # noqa: E402
from med3dinsight.io.store import Store  # noqa: E402
from med3dinsight.models.export import save_encoder  # noqa: E402
from med3dinsight.models.med3dinsight import build_model  # noqa: E402
from med3dinsight.serving.app import build_app  # noqa: E402
from med3dinsight.serving.runner import EncoderRunner  # noqa: E402
from med3dinsight.utils.ray_session import ray_session  # noqa: E402
from tests.unit.serve import serve_helpers as helpers  # noqa: E402


def bench_export(folder: Path, feature_size: int) -> Path:
    """The small encoder: unet_small at 32^3 with a 2-layer PSAT, exported as pretraining would."""
    torch.manual_seed(0)
    backbone = BackboneConfig(name="unet_small", img_size=list(helpers.CROP), feature_size=feature_size, num_levels=3)
    psat = PSATConfig(num_queries=16, dim=64, num_layers=2, num_heads=4, ffn_dim=128, num_slice_bins=8, out_dim=32)
    model = build_model(ModelConfig(backbone=backbone, psat=psat))
    return save_encoder(model, folder, preprocessing=helpers.export_preprocessing(helpers.ingest_config()))


def p50_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def paired_p50_ms(local, remote, n: int) -> tuple[float, float]:
    """p50 of `local()` and of `remote()`, called alternately n times each."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(n):
        for fn, out in ((local, times[0]), (remote, times[1])):
            t = time.perf_counter()
            fn()
            out.append(1000 * (time.perf_counter() - t))
    return statistics.median(times[0]), statistics.median(times[1])


def hammer(url: str, body: dict, num_requests: int, clients: int) -> tuple[float, dict[int, int], list[int]]:
    """req/s, status counts and batch sizes of `num_requests` POSTs from `clients` threads (one session each)."""
    sessions = [requests.Session() for _ in range(clients)]

    def worker(index: int) -> list[tuple[int, int]]:
        out = []
        for _ in range(index, num_requests, clients):
            try:
                response = sessions[index].post(url, json=body, timeout=120)
                out.append((response.status_code, response.json().get("batch_size", 0)))
            except requests.RequestException:
                out.append((599, 0))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for chunk in pool.map(worker, range(clients)) for r in chunk]
    elapsed = time.perf_counter() - start
    statuses: dict[int, int] = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return num_requests / elapsed, statuses, [b for _, b in results]


def combine(runs: list[tuple[float, dict[int, int], list[int]]]) -> tuple[float, dict[int, int], list[int]]:
    """Total req/s, summed status counts and all batch sizes of several `hammer` runs."""
    num_requests = sum(len(sizes) for _, _, sizes in runs)
    seconds = sum(len(sizes) / rate for rate, _, sizes in runs)
    statuses: dict[int, int] = {}
    for _, counts, _ in runs:
        for status, n in counts.items():
            statuses[status] = statuses.get(status, 0) + n
    return num_requests / seconds, statuses, [b for _, _, sizes in runs for b in sizes]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests-c1", type=int, default=60)
    parser.add_argument("--requests-c16", type=int, default=320)
    parser.add_argument("--load-requests", type=int, default=1000)
    parser.add_argument("--port", type=int, default=18431)
    parser.add_argument("--batch-wait-s", type=float, default=0.01)
    parser.add_argument("--feature-size", type=int, default=16, help="unet_small width of the benchmarked encoder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="m3d-bench-serve-"))
    atexit.register(shutil.rmtree, root, True)
    export = bench_export(root / "model", args.feature_size)
    ct = helpers.write_ct(root / "ct.nii", seed=1, shape_zyx=(24, 36, 32))
    store = Store(str(root / "store"))
    row = ingest_volume(Source(uri=str(ct), kind="file", files=[str(ct)]), helpers.ingest_config(), store)
    volume_id = row["volume_id"]
    base = ["model=" + str(export), f"store={store.root}", "replicas.num_cpus=1", "replicas.torch_threads=1",
            "batching.max_batch_size=16", "batching.max_ongoing_requests=32", "crop.max_windows=1",
            f"batching.batch_wait_timeout_s={args.batch_wait_s}"]  # fmt: skip
    configs = ["configs/serve.yaml", "configs/quickstart/serve.yaml"]
    cfg_on = load_config(ServeConfig, configs, [*base, "app_name=on"])
    cfg_off = load_config(ServeConfig, configs, [*base, "app_name=off", "batching.enabled=false"])

    runner = EncoderRunner(export, cfg_on)
    data = ct.read_bytes()
    prepared = runner.preprocessor.from_store(store, volume_id)
    inproc_encoder = p50_ms(lambda: runner.embed_batch([runner.item(prepared)]), args.requests_c1)

    with ray_session(RayConfig(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="m3d-bench-ray-"), progress_bars=False)):
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(build_app(cfg_on), name="on", route_prefix="/on")
        serve.run(build_app(cfg_off), name="off", route_prefix="/off")
        url = f"http://127.0.0.1:{args.port}"
        session = requests.Session()
        body = {"volume_id": volume_id}
        for _ in range(10):  # warm both apps (first requests pay lazy imports and allocations)
            assert session.post(f"{url}/on/v1/embed", json=body, timeout=60).status_code == 200
            assert session.post(f"{url}/off/v1/embed", json=body, timeout=60).status_code == 200
        # In-process and HTTP calls alternate, so both see the same machine load (others share these cores).
        files = {"file": ("ct.nii", data)}
        inproc_id, http_id = paired_p50_ms(
            lambda: runner.embed_batch([runner.item(runner.preprocessor.from_store(store, volume_id))]),
            lambda: session.post(f"{url}/on/v1/embed", json=body, timeout=60).raise_for_status(), args.requests_c1,
        )
        inproc_upload, http_upload = paired_p50_ms(
            lambda: runner.embed_batch([runner.item(runner.preprocessor.from_upload(data, "ct.nii"))]),
            lambda: session.post(f"{url}/on/v1/embed", files=files, timeout=60).raise_for_status(), args.requests_c1,
        )
        # Off and on alternate in rounds so a neighbour's load on these shared cores hits both alike.
        rounds = 4
        runs = {"off": [], "on": []}
        for _ in range(rounds):
            for mode in ("off", "on"):
                runs[mode].append(hammer(f"{url}/{mode}/v1/embed", body, args.requests_c16 // rounds, 16))
        rate_off, status_off, _ = combine(runs["off"])
        rate_on, status_on, sizes = combine(runs["on"])
        _, status_load, _ = hammer(f"{url}/on/v1/embed", body, args.load_requests, 16)
        serve.shutdown()

    result = {
        "p50_overhead_ms_c1": round(http_id - inproc_id, 2),
        "batching_gain_c16": round(rate_on / rate_off, 2),
        "errors_under_load": sum(n for s, n in status_load.items() if s >= 500),
        "p50_http_ms_c1": round(http_id, 2), "p50_inprocess_ms": round(inproc_id, 2),
        "p50_inprocess_encoder_only_ms": round(inproc_encoder, 2),
        "upload_p50_overhead_ms_c1": round(http_upload - inproc_upload, 2),
        "req_per_s_c16_batching_on": round(rate_on, 1), "req_per_s_c16_batching_off": round(rate_off, 1),
        "mean_batch_size_c16": round(statistics.mean(sizes), 2),
        "statuses": {"c16_on": status_on, "c16_off": status_off, "load": status_load},
        "load_requests": args.load_requests, "embedding_dim": runner.embedding_dim,
        "crop_zyx": list(runner.crop_zyx), "feature_size": args.feature_size,
        "batch_wait_timeout_s": args.batch_wait_s, "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
