"""Ingest benchmark: Ray Data vs a plain loop, store crops vs .nii.gz and memmap, store size vs .nii.gz.

    OMP_NUM_THREADS=1 .venv/bin/python bench/ingest.py [--volumes 8] [--shape 160 256 256] [--crops 100] [--repeats 5]

Everything is measured side by side in one run on synthetic CT phantoms; the last line printed is one
JSON object with the ratios (targets: parallel_speedup >= 1.6, crop_speedup_vs_nifti >= 50,
crop_ratio_vs_memmap >= 0.1, size_ratio_vs_niigz <= 0.85). Store crops go through the reader's
decoded-chunk cache, starting empty so misses count (`*_nocache`: straight through zarr); the memmap
reads from a warm page cache. Every reader runs on one thread (ingest's limit_threads, like one data-loader
worker per core) and each figure is the best of 5 trials; ingest timings are the best of --repeats.
`--sweep` also compares codecs and chunk/shard layouts.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from med3dinsight.config import load_config
from med3dinsight.config.common import RayConfig
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.data.phantoms import ct_phantom
from med3dinsight.ingest.pipeline import ingest_one, ingest_sources
from med3dinsight.io.chunk_cache import ChunkCache
from med3dinsight.io.discover import discover_sources
from med3dinsight.io.store import Store
from med3dinsight.io.volume_reader import open_volume
from med3dinsight.utils.ray_session import ray_session

CROP = 96
SWEEP = [
    ("pcodec", [64] * 3, None), ("pcodec", [128] * 3, None), ("pcodec", [32] * 3, [128] * 3),
    ("blosc-zstd", [64] * 3, None), ("blosc-zstd", [128] * 3, None), ("blosc-zstd", [32] * 3, [128] * 3),
    ("blosc-lz4", [64] * 3, None), ("zstd", [64] * 3, None),
]  # fmt: skip
"""(codec, chunk, shard) layouts `--sweep` compares."""


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def random_starts(shape: tuple[int, ...], n: int, seed: int = 0) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(seed)
    return [tuple(int(rng.integers(0, s - CROP + 1)) for s in shape) for _ in range(n)]


def crops_per_s(read, starts) -> float:
    """Crops/s over `starts`; the decoded-chunk cache (if any) starts empty, so misses are counted."""
    t0 = time.perf_counter()
    for s in starts:
        crop = read(s)
        assert crop.shape == (CROP, CROP, CROP)
    return len(starts) / (time.perf_counter() - t0)


def nifti_crop(nii: Path, start_zyx: tuple[int, int, int]) -> np.ndarray:
    """SimpleITK at its best on .nii.gz: it still inflates the whole file, but extracts only the crop."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(nii))
    reader.SetExtractIndex([int(v) for v in start_zyx[::-1]])
    reader.SetExtractSize([CROP] * 3)
    return sitk.GetArrayFromImage(reader.Execute())


def time_ingest(store: Store, cfg: IngestConfig, sources, parallel: bool) -> float:
    t0 = time.perf_counter()
    if parallel:
        rows = ingest_sources(sources, cfg, store)
    else:
        rows = [ingest_one(s, cfg, store) for s in sources]
    elapsed = time.perf_counter() - t0
    assert all(r["status"] == "ok" and not r["skipped"] for r in rows), [r["message"] for r in rows]
    return elapsed


def crop_figures(work: Path, cfg: IngestConfig, nii: Path, crops: int, trials: int = 5) -> dict[str, float]:
    """Crops/s of each reader, best of `trials` (the store's cache starts empty in every trial)."""
    layout = "_".join(map(str, [cfg.zarr.codec, *cfg.zarr.chunk, *(cfg.zarr.shard or [])]))
    store = Store(str(work / f"store_{layout}"))
    [row] = [ingest_one(s, cfg, store) for s in discover_sources(str(nii))]
    cold = open_volume(store, row["volume_id"], cache=None)
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(nii)))
    npy = work / "memmap.npy"
    np.save(npy, array)
    memmap = np.load(npy, mmap_mode="r")
    starts = random_starts(cold.shape, crops)
    level0 = folder_bytes(Path(store.volume_path(row["volume_id"])) / "0")

    def cached_crops_per_s() -> float:
        volume = open_volume(store, row["volume_id"], cache=ChunkCache(512 << 20))
        return crops_per_s(lambda s: volume.read_crop(s, (CROP,) * 3), starts)

    def best(measure) -> float:
        return max(measure() for _ in range(trials))

    return {
        "store_crops_per_s": best(cached_crops_per_s),
        "store_cold_crops_per_s": best(lambda: crops_per_s(lambda s: cold.read_crop(s, (CROP,) * 3), starts)),
        "nifti_crops_per_s": best(lambda: crops_per_s(lambda s: nifti_crop(nii, s), starts[: max(3, crops // 10)])),
        "memmap_crops_per_s": best(lambda: crops_per_s(
            lambda s: np.array(memmap[s[0] : s[0] + CROP, s[1] : s[1] + CROP, s[2] : s[2] + CROP]), starts
        )),  # fmt: skip
        "store_bytes": folder_bytes(Path(store.volume_path(row["volume_id"]))),
        "store_level0_bytes": level0,
        "niigz_bytes": nii.stat().st_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volumes", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 256, 256], help="z y x")
    parser.add_argument("--crops", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5, help="ingest timings per side (the best counts)")
    parser.add_argument("--sweep", action="store_true", help="also compare chunk shapes and codecs")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    work = Path(tempfile.mkdtemp(prefix="m3d-bench-ingest-"))
    atexit.register(shutil.rmtree, work, True)  # ~0.6 GB of stores per run
    raw = work / "raw"
    raw.mkdir()
    for i in range(args.volumes):
        image, _ = ct_phantom(tuple(args.shape), (0.8, 0.8, 1.5), seed=i)
        sitk.WriteImage(image, str(raw / f"ct_{i}.nii.gz"))
    sources = discover_sources(str(raw))
    cfg = load_config(IngestConfig, overrides=[f"input={raw}", "ray.progress_bars=false"])

    shape = "x".join(map(str, args.shape))
    result: dict[str, float | int | str | list[float]] = {"volumes": args.volumes, "shape_zyx": shape}
    # Best of --repeats for each side, alternating, each into a fresh store: transient load from
    # anything else on a 2-core machine then spoils neither figure.
    t_ray, t_loop = [], []
    with ray_session(RayConfig(num_cpus=2, progress_bars=False)):
        # Ray Data start-up and each worker's first imports are not ingest work.
        ingest_sources(sources[:4], cfg, Store(str(work / "warmup")))
        for rep in range(args.repeats):
            t_ray.append(time_ingest(Store(str(work / f"store_ray_{rep}")), cfg, sources, parallel=True))
            t_loop.append(time_ingest(Store(str(work / f"store_loop_{rep}")), cfg, sources, parallel=False))
    result |= {
        "ray_s": round(min(t_ray), 2),
        "loop_s": round(min(t_loop), 2),
        "parallel_speedup": round(min(t_loop) / min(t_ray), 3),
        "parallel_speedup_runs": [round(loop / ray, 2) for loop, ray in zip(t_loop, t_ray, strict=True)],
    }

    figures = crop_figures(work, cfg, raw / "ct_0.nii.gz", args.crops)
    result |= {
        "crop_speedup_vs_nifti": round(figures["store_crops_per_s"] / figures["nifti_crops_per_s"], 1),
        "crop_speedup_vs_nifti_nocache": round(figures["store_cold_crops_per_s"] / figures["nifti_crops_per_s"], 1),
        "crop_ratio_vs_memmap": round(figures["store_crops_per_s"] / figures["memmap_crops_per_s"], 3),
        "crop_ratio_vs_memmap_nocache": round(figures["store_cold_crops_per_s"] / figures["memmap_crops_per_s"], 3),
        "size_ratio_vs_niigz": round(figures["store_bytes"] / figures["niigz_bytes"], 3),
        "size_ratio_level0_vs_niigz": round(figures["store_level0_bytes"] / figures["niigz_bytes"], 3),
        "store_crops_per_s": round(figures["store_crops_per_s"], 1),
    }
    if args.sweep:
        for codec, chunk, shard in SWEEP:
            zarr_cfg = {"codec": codec, "chunk": chunk, "shard": shard}
            c = load_config(IngestConfig, data={**cfg_dict(cfg), "zarr": zarr_cfg})
            f = crop_figures(work, c, raw / "ct_0.nii.gz", args.crops)
            print(json.dumps({**zarr_cfg,
                              "size_ratio": round(f["store_bytes"] / f["niigz_bytes"], 3),
                              "level0_ratio": round(f["store_level0_bytes"] / f["niigz_bytes"], 3),
                              "crops_per_s": round(f["store_crops_per_s"], 1),
                              "cold_crops_per_s": round(f["store_cold_crops_per_s"], 1)}))  # fmt: skip
    print(json.dumps(result))


def cfg_dict(cfg: IngestConfig) -> dict:
    from med3dinsight.config import config_to_dict

    return config_to_dict(cfg)


if __name__ == "__main__":
    main()
