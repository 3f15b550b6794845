"""The Ray Serve application: a FastAPI ingress deployment around `EncoderRunner`, batched across callers.

Routes (OpenAPI at /docs): POST /v1/embed, POST /v1/segment and /v1/classify (only with a head), GET
/v1/models, GET /healthz. Every failure a request can cause becomes a JSON error `{status, reason, message}`
with its own status code and never escapes into the replica; 500s are counted, and after
`health.max_consecutive_internal_errors` of them in a row `check_health` fails so Serve replaces the replica.
"""

# No `from __future__ import annotations` here: FastAPI must see `Request` as a type, not a string.
import asyncio
import base64
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve import Application

from med3dinsight.config import config_to_dict, load_config
from med3dinsight.config.serve import ServeConfig
from med3dinsight.io.store import Store
from med3dinsight.serving import errors
from med3dinsight.serving.errors import ServeError
from med3dinsight.serving.preprocessing import PreparedVolume
from med3dinsight.serving.request_checks import (
    check_auth,
    parse_volume_request,
    read_limited,
    request_timeout,
    resolve_token,
    slice_params,
)
from med3dinsight.serving.runner import EmbedItem, EncoderRunner, nifti_bytes, resolve_model_dir

log = logging.getLogger(__name__)
DEPLOYMENT_NAME = "Med3DEncoder"
api = FastAPI(title="Med3DInsight encoder", version="1")


@serve.deployment(name=DEPLOYMENT_NAME)
@serve.ingress(api)
class Med3DEncoder:
    """One replica: the loaded export, its preprocessor and the batch queue.

    Args:
        cfg_dict: a ServeConfig as a plain dict (re-typed here, as configs cross Ray boundaries).
    """

    def __init__(self, cfg_dict: dict[str, Any]) -> None:
        self.cfg = load_config(ServeConfig, data=cfg_dict)
        torch.set_num_threads(self.cfg.replicas.torch_threads or max(1, int(self.cfg.replicas.num_cpus)))
        self.token = resolve_token(self.cfg.auth)
        self.store = Store(self.cfg.store, self.cfg.store_options)
        model_dir = resolve_model_dir(self.cfg.model, self.store)
        self.runner = EncoderRunner(model_dir, self.cfg, name=os.path.basename(self.cfg.model.rstrip("/")))
        self.max_bytes = int(self.cfg.limits.max_upload_mb * 2**20)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.internal_errors = 0
        self.embeds_in_flight = 0
        self.broken: str | None = None
        self._embed_batched.set_max_batch_size(self.cfg.batching.max_batch_size)
        self._embed_batched.set_batch_wait_timeout_s(self.cfg.batching.batch_wait_timeout_s)
        log.info("replica %s serves %s (%s)", self.replica, model_dir, self.runner.device)

    # --- routes -----------------------------------------------------------------------------------
    @api.get("/healthz")
    async def healthz(self) -> JSONResponse:
        status = 503 if self._unhealthy_reason() else 200
        body = {"status": "ok" if status == 200 else "unhealthy", "replica": self.replica, "model": self.runner.name}
        return JSONResponse(body, status_code=status)

    @api.get("/v1/models")
    async def models(self, request: Request) -> JSONResponse:
        return await self._handle(request, self._models)

    @api.post("/v1/embed")
    async def embed(self, request: Request) -> JSONResponse:
        return await self._handle(request, self._embed)

    @api.post("/v1/classify")
    async def classify(self, request: Request) -> JSONResponse:
        return await self._handle(request, self._classify)

    @api.post("/v1/segment")
    async def segment(self, request: Request) -> JSONResponse:
        return await self._handle(request, self._segment)

    # --- Serve hooks --------------------------------------------------------------------------------
    def check_health(self) -> None:
        """Raise when this replica should be replaced (Serve calls this every health.period_s)."""
        reason = self._unhealthy_reason()
        if reason:
            raise RuntimeError(f"replica {self.replica} unhealthy: {reason}")

    def mark_unhealthy(self, reason: str) -> str:
        """Operator hook (DeploymentHandle only, not HTTP): fail the next health check; returns the replica id."""
        self.broken = reason
        return self.replica

    # --- implementation ---------------------------------------------------------------------------
    async def _handle(self, request: Request, work: Callable[[Request], Awaitable[dict[str, Any]]]) -> JSONResponse:
        start = time.perf_counter()
        try:
            check_auth(request.headers.get("authorization"), self.token)
            timeout = request_timeout(self.cfg.limits.request_timeout_s, request.query_params.get("timeout_s"))
            try:
                body = await asyncio.wait_for(work(request), timeout)
            except TimeoutError:
                raise ServeError(504, errors.TIMEOUT, f"request took over {timeout} s") from None
        except ServeError as e:
            return JSONResponse(e.to_json(), status_code=e.status)
        except Exception as e:  # a bug or a broken device: answer 500, count it for the health check
            self.internal_errors += 1
            log.exception("internal error on %s", request.url.path)
            error = ServeError(500, errors.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
            return JSONResponse(error.to_json(), status_code=500)
        self.internal_errors = 0
        body.setdefault("timings_ms", {})["total"] = round(1000 * (time.perf_counter() - start), 2)
        return JSONResponse(body)

    async def _models(self, request: Request) -> dict[str, Any]:
        return {"models": [self.runner.info()]}

    async def _prepare(self, request: Request) -> tuple[PreparedVolume, dict[str, Any]]:
        parsed = await parse_volume_request(request.headers, await read_limited(request, self.max_bytes))
        for key in ("plane", "slice_position"):  # query parameters work for both body kinds
            if parsed[key] is None and request.query_params.get(key) is not None:
                parsed[key] = request.query_params[key]
        if "upload" in parsed:
            prepared = await asyncio.to_thread(self.runner.preprocessor.from_upload, *parsed["upload"])
        else:
            prepared = await asyncio.to_thread(self.runner.preprocessor.from_store, self.store, parsed["volume_id"])
        return prepared, parsed

    async def _embed(self, request: Request) -> dict[str, Any]:
        self.embeds_in_flight += 1
        try:
            t0 = time.perf_counter()
            prepared, parsed = await self._prepare(request)
            plane, position = slice_params(parsed["plane"], parsed["slice_position"])
            item = self.runner.item(prepared, plane, position)
            t1 = time.perf_counter()
            # Alone in the replica, a request would only wait out the batch timeout: run it at once.
            if self.cfg.batching.enabled and (self.embeds_in_flight > 1 or not self.cfg.batching.run_alone_at_once):
                embedding, batch_size = await self._embed_batched(item)
            else:
                embedding, batch_size = (await asyncio.to_thread(self.runner.embed_batch, [item]))[0], 1
            t2 = time.perf_counter()
        finally:
            self.embeds_in_flight -= 1
        return {
            "embedding": embedding.tolist(), "embedding_dim": int(embedding.shape[0]),
            "model": {"name": self.runner.name, "version": self.runner.version},
            "preprocessing": prepared.applied, "batch_size": batch_size, "replica": self.replica,
            "timings_ms": {"preprocess": round(1000 * (t1 - t0), 2), "encode": round(1000 * (t2 - t1), 2)},
        }  # fmt: skip

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _embed_batched(self, items: list[EmbedItem]) -> list[tuple[Any, int]]:
        embeddings = await asyncio.to_thread(self.runner.embed_batch, items)
        return [(e, len(items)) for e in embeddings]

    async def _classify(self, request: Request) -> dict[str, Any]:
        self._require_head("classification")
        prepared, _ = await self._prepare(request)
        probabilities = await asyncio.to_thread(self.runner.classify, prepared)
        return {
            "probabilities": probabilities, "label": max(probabilities, key=probabilities.get),
            "model": {"name": self.runner.name, "version": self.runner.version}, "preprocessing": prepared.applied,
        }  # fmt: skip

    async def _segment(self, request: Request) -> dict[str, Any]:
        self._require_head("segmentation")
        prepared, _ = await self._prepare(request)
        label_map, counts = await asyncio.to_thread(self.runner.segment, prepared)
        return {
            "label_map": base64.b64encode(await asyncio.to_thread(nifti_bytes, label_map)).decode(),
            "label_map_format": "nifti-gz-base64", "size_xyz": list(label_map.GetSize()), "voxel_counts": counts,
            "model": {"name": self.runner.name, "version": self.runner.version}, "preprocessing": prepared.applied,
        }  # fmt: skip

    def _require_head(self, task: str) -> None:
        if task not in self.runner.tasks:
            message = f"model {self.runner.name!r} has no {task} head (tasks: {self.runner.tasks})"
            raise ServeError(404, errors.NO_HEAD, message)

    def _unhealthy_reason(self) -> str | None:
        if self.broken:
            return self.broken
        if self.internal_errors >= self.cfg.health.max_consecutive_internal_errors:
            return f"{self.internal_errors} internal errors in a row"
        return None


def deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """Serve deployment options (replicas, autoscaling, resources, health checks) from the config."""
    replicas = cfg.replicas
    actor: dict[str, Any] = {"num_cpus": replicas.num_cpus, "num_gpus": replicas.num_gpus}
    if replicas.accelerator_type:
        actor["accelerator_type"] = replicas.accelerator_type
    options: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": cfg.batching.max_ongoing_requests,
        "health_check_period_s": cfg.health.period_s,
        "health_check_timeout_s": cfg.health.timeout_s,
    }
    if replicas.autoscaling:
        options["autoscaling_config"] = {
            "min_replicas": replicas.min_replicas, "max_replicas": replicas.max_replicas,
            "target_ongoing_requests": replicas.target_ongoing_requests,
        }  # fmt: skip
    else:
        options["num_replicas"] = replicas.num_replicas
    return options


def build_app(cfg: ServeConfig) -> Application:
    """The bound Serve application of a config (what `serve.run` and serve/app.py deploy)."""
    return Med3DEncoder.options(**deployment_options(cfg)).bind(config_to_dict(cfg))
