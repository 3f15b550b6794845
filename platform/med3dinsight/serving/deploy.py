"""Deploy the encoder app on the connected Ray (cluster or embedded), and the quickstart's demo call."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

from ray import serve

from med3dinsight.config import load_config
from med3dinsight.config.serve import ServeConfig
from med3dinsight.io.store import Store
from med3dinsight.serving.app import build_app
from med3dinsight.serving.runner import locate_model

log = logging.getLogger(__name__)


def endpoint_url(cfg: ServeConfig) -> str:
    """The base URL clients use (loopback when the proxy listens on all interfaces)."""
    host = "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::") else cfg.http.host
    return f"http://{host}:{cfg.http.port}{cfg.http.route_prefix.rstrip('/')}"


def deploy(cfg: ServeConfig) -> str:
    """Start Serve's HTTP proxy and deploy the app on the Ray this process is connected to.

    Fails before deploying when the model cannot be found, so a typo never leaves a crash-looping app.

    Returns:
        The endpoint's base URL.

    Raises:
        ValueError: when the model is neither a directory export nor a name under the store's models/.
    """
    location = locate_model(cfg.model, Store(cfg.store, cfg.store_options))
    serve.start(http_options={"host": cfg.http.host, "port": cfg.http.port})
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.http.route_prefix)
    url = endpoint_url(cfg)
    log.info("deployed %s from %s at %s", cfg.model, location, url)
    return url


def serve_until_interrupted(poll_s: float = 5.0) -> None:
    """Block until Ctrl-C or SIGTERM (embedded Ray: the app lives as long as this process)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            time.sleep(poll_s)
    except KeyboardInterrupt:
        log.info("interrupted: shutting Serve down")


def serve_demo(
    store: str, model_dir: str, sample: str, configs: str = "configs", port: int = 8000
) -> tuple[str, int]:
    """The quickstart's last step: deploy `model_dir` on the current (embedded) Ray and embed `sample` over HTTP.

    Call it inside a `ray_session`; Serve is left running (call `serve.shutdown()` when done).

    Args:
        store: store root (for volume_id requests).
        model_dir: an export written by `save_encoder`.
        sample: a volume file (.nii.gz, .mha, .nrrd, or a .zip of a DICOM series).
        configs: the repository's configs/ folder (serve.yaml + quickstart/serve.yaml).
        port: HTTP port on 127.0.0.1.

    Returns:
        The endpoint URL and the embedding width the endpoint returned.
    """
    from med3dinsight.serving.client import EncoderClient, summarize

    files = [Path(configs) / "serve.yaml", Path(configs) / "quickstart" / "serve.yaml"]
    cfg = load_config(ServeConfig, files, [f"store={store}", f"model={model_dir}", f"http.port={port}"])
    url = deploy(cfg)
    client = EncoderClient(url)
    try:
        result = client.embed(sample)
    finally:
        client.close()
    print(summarize(result))
    return url, int(result["embedding_dim"])
