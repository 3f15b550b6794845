"""The ingest stage on Ray Data: one task per volume, then the catalog and the fingerprint."""

from __future__ import annotations

import json
import logging
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import ray

from med3dinsight.config import config_to_dict
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.ingest.fingerprint import compute_fingerprint
from med3dinsight.io.catalog import merge_rows, read_catalog, write_catalog
from med3dinsight.io.discover import discover_sources
from med3dinsight.io.sources import Source
from med3dinsight.io.store import Store, atomic_write

log = logging.getLogger(__name__)
BACKPRESSURE_POLICIES_KEY = "backpressure_policies.enabled"  # ray.data._internal.execution.backpressure_policy


@dataclass(slots=True)
class IngestSummary:
    """What one ingest run did."""

    rows: list[dict[str, Any]]
    statuses: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    exit_code: int = 0

    def format(self) -> str:
        lines = [f"ingest: {len(self.rows)} inputs, {self.statuses.get('ok', 0)} ok "
                 f"({self.skipped} already in the store), {self.statuses.get('rejected', 0)} rejected"]
        lines += [f"  rejected {n:4d} x {reason}" for reason, n in sorted(self.reasons.items())]
        lines += [f"    {r['reason']}: {r['message']}" for r in self.rows if r["status"] != "ok"][:20]
        return "\n".join(lines)


def run_ingest(cfg: IngestConfig) -> IngestSummary:
    """Ingest every volume named by `cfg.input` into `cfg.store` on the connected Ray cluster.

    Writes `volumes/<id>.ome.zarr` per accepted volume, merges this run's rows into
    `catalog/volumes.parquet`, rewrites `catalog/fingerprint.json` and saves the resolved config as
    `catalog/ingest.config.json`. Files whose content would not change are not rewritten.

    Raises:
        ValueError: when the input names nothing.
    """
    store = Store(cfg.store, cfg.store_options)
    sources = discover_sources(cfg.input, cfg.store_options)
    if not sources:
        raise ValueError(f"input {cfg.input!r} holds no volumes")
    log.info("ingest: %d inputs from %s into %s", len(sources), cfg.input, store.root)
    old_rows = read_catalog(store)
    rows = ingest_sources(sources, cfg, store, old_rows)

    catalog = merge_rows(old_rows, rows)
    write_catalog(store, catalog)
    _write_if_changed(store, store.fingerprint_path, compute_fingerprint(catalog))
    _write_if_changed(store, store.path("catalog", "ingest.config.json"), config_to_dict(cfg))
    return summarize(rows, cfg.max_failure_ratio)


def ingest_sources(
    sources: list[Source], cfg: IngestConfig, store: Store, catalog: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Run `ingest_volume` on every source as one Ray task each; rows come back in source order.

    A source's ok row in `catalog` (the store's catalog before this run) travels with its task, so an
    unchanged source is skipped from its file-system stamp alone, without reading its bytes.
    """
    previous = {r["source"]: r for r in catalog or [] if r["status"] == "ok"}
    items = [
        {"source": json.dumps(asdict(s)), "previous": json.dumps(previous.get(s.uri))} for s in sources
    ]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    # Each task writes its volume straight to the store and returns a ~1 KB row, so object-store
    # backpressure has nothing to protect; its budget for not-yet-measured outputs ran the first task
    # alone (bench/ingest.py: 8 volumes on 2 CPUs took ~1 task longer). CPUs still bound concurrency.
    ds.context.set_config(BACKPRESSURE_POLICIES_KEY, [])
    ds = ds.map(
        _ingest_item,
        fn_kwargs={"cfg": cfg, "store": store},  # the validated dataclass pickles; no re-validation per task
        num_cpus=cfg.num_cpus_per_task,
    )
    rows = [json.loads(item["row"]) for item in ds.take_all()]
    order = {s.uri: i for i, s in enumerate(sources)}
    return sorted(rows, key=lambda r: order[r["source"]])


def ingest_one(
    source: Source, cfg: IngestConfig, store: Store, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`ingest_volume`, turning an unexpected exception into a rejected row so the job goes on."""
    from med3dinsight.ingest.volume import ingest_volume

    limit_threads(max(1, int(cfg.num_cpus_per_task)))
    try:
        return ingest_volume(source, cfg, store, previous=previous)
    except Exception as e:  # a bug must not stop the other volumes; the row carries the traceback
        log.exception("internal error on %s", source.uri)
        return {
            "volume_id": None, "source": source.uri, "status": "rejected", "reason": "INTERNAL_ERROR",
            "message": f"{source.uri}: {type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}",
        }


def limit_threads(num_threads: int) -> None:
    """Make SimpleITK filters, Blosc and zarr's codec pool use the CPUs Ray reserved for this task, no more.

    All three default to every core; with one task per core that oversubscribes the node, and
    parallelism across volumes beats parallelism inside one.
    """
    import numcodecs.blosc
    import SimpleITK as sitk
    import zarr
    import zarr.core.sync

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(num_threads)
    numcodecs.blosc.set_nthreads(num_threads)
    zarr.config.set({"threading.max_workers": num_threads})
    # zarr encodes chunks on its event loop's default executor, made once per process; the setting
    # above only shapes the next one, so replace a pool of another size (zarr 3.1 keeps it here).
    pool = zarr.core.sync._executor
    if pool is not None and pool._max_workers != num_threads:
        zarr.core.sync.cleanup_resources()


def summarize(rows: list[dict[str, Any]], max_failure_ratio: float) -> IngestSummary:
    """Counts per status and reason; exit code 1 when every input failed or the ratio is passed."""
    statuses = Counter(r["status"] for r in rows)
    reasons = Counter(r["reason"] for r in rows if r["status"] != "ok")
    rejected = statuses.get("rejected", 0)
    failed = rejected == len(rows) or rejected / max(len(rows), 1) > max_failure_ratio
    return IngestSummary(
        rows=rows,
        statuses=dict(statuses),
        reasons=dict(reasons),
        skipped=sum(bool(r.get("skipped")) for r in rows),
        exit_code=1 if failed else 0,
    )


def _ingest_item(item: dict[str, Any], cfg: IngestConfig, store: Store) -> dict[str, Any]:
    source = Source(**json.loads(item["source"]))
    return {"row": json.dumps(ingest_one(source, cfg, store, json.loads(item["previous"])))}


def _write_if_changed(store: Store, path: str, payload: dict[str, Any]) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True)
    if store.exists(path):
        with store.fs.open(path, "r") as f:
            if f.read() == text:
                return
    atomic_write(store, path, text.encode())
