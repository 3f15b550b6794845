"""A small Python client of the Serve endpoint (and what `med3d embed FILE --url ...` uses).

    from med3dinsight.serving.client import EncoderClient
    client = EncoderClient("http://127.0.0.1:8000", token=None)
    result = client.embed("scan.nii.gz")            # or client.embed(volume_id="0123456789abcdef")
    print(result["embedding_dim"], result["model"])
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import requests


class ServeClientError(RuntimeError):
    """The endpoint answered with an error.

    Attributes:
        status: HTTP status code.
        reason: the endpoint's reason code (e.g. TRUNCATED, PAYLOAD_TOO_LARGE), or "" if none was sent.
        message: the endpoint's message.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class EncoderClient:
    """HTTP client of one deployed encoder (keeps one connection pool).

    Args:
        url: base URL of the Serve app, e.g. http://127.0.0.1:8000.
        token: bearer token (default: $MED3D_SERVE_TOKEN if set).
        timeout_s: client-side timeout of each call.
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        token = token if token is not None else os.environ.get("MED3D_SERVE_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self.session.close()

    def health(self) -> dict[str, Any]:
        return self._check(self.session.get(f"{self.url}/healthz", timeout=self.timeout_s))

    def models(self) -> list[dict[str, Any]]:
        return self._check(self.session.get(f"{self.url}/v1/models", timeout=self.timeout_s))["models"]

    def embed(
        self, path: str | Path | None = None, volume_id: str | None = None, plane: str | None = None,
        slice_position: float | None = None, data: bytes | None = None, filename: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Embed an uploaded file (`path`, or `data` + `filename`) or a stored volume (`volume_id`).

        Returns:
            The response JSON: embedding (list), embedding_dim, model, preprocessing, batch_size, ...

        Raises:
            ServeClientError: on an error response.
            ValueError: when not exactly one of path, data, volume_id is given.
        """
        return self._post("/v1/embed", path, volume_id, plane, slice_position, data, filename)

    def classify(self, path: str | Path | None = None, volume_id: str | None = None) -> dict[str, Any]:
        """Class probabilities from the model's classification head."""
        return self._post("/v1/classify", path, volume_id)

    def segment(self, path: str | Path | None = None, volume_id: str | None = None) -> dict[str, Any]:
        """Label map (base64 .nii.gz in `label_map`, the input's geometry) from the segmentation head."""
        return self._post("/v1/segment", path, volume_id)

    def _post(
        self, route: str, path: str | Path | None = None, volume_id: str | None = None, plane: str | None = None,
        slice_position: float | None = None, data: bytes | None = None, filename: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        if sum(x is not None for x in (path, data, volume_id)) != 1:
            raise ValueError("give exactly one of path, data (with filename) or volume_id")
        fields = {k: v for k, v in (("plane", plane), ("slice_position", slice_position)) if v is not None}
        if volume_id is not None:
            response = self.session.post(
                f"{self.url}{route}", json={"volume_id": volume_id, **fields}, timeout=self.timeout_s
            )
        else:
            if path is not None:
                data, filename = Path(path).read_bytes(), Path(path).name
            files = {"file": (filename or "upload", data, "application/octet-stream")}
            form = {k: str(v) for k, v in fields.items()}
            response = self.session.post(f"{self.url}{route}", files=files, data=form, timeout=self.timeout_s)
        return self._check(response)

    @staticmethod
    def _check(response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            if isinstance(body, dict) and "reason" in body:
                raise ServeClientError(response.status_code, str(body["reason"]), str(body.get("message", "")))
            raise ServeClientError(response.status_code, "", response.text[:500])
        if not isinstance(body, dict):
            raise ServeClientError(response.status_code, "", f"not a JSON object: {response.text[:200]}")
        return body


def summarize(result: dict[str, Any]) -> str:
    """A few readable lines about an embed response (what `med3d embed` prints)."""
    embedding = np.asarray(result["embedding"], dtype=np.float64)
    pre = result.get("preprocessing", {})
    head = ", ".join(f"{v:+.4f}" for v in embedding[:4])
    return "\n".join([
        f"model      {result['model']['name']} (version {result['model']['version']})",
        f"embedding  width {result['embedding_dim']}, L2 norm {np.linalg.norm(embedding):.4f}, first [{head}, ...]",
        f"input      {pre.get('modality')} {pre.get('shape_zyx')} voxels (z, y, x) at {pre.get('spacing')} mm, "
        f"{pre.get('crop', {}).get('num_windows')} window(s) of {pre.get('model_input', {}).get('crop_size')}",
    ])  # fmt: skip


def embed_command(argv: list[str] | None = None) -> int:
    """`med3d embed FILE|--volume-id ID --url URL [--token T]`: print the embedding summary (exit 1 on error)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="med3d embed", description="Embed a volume with a deployed encoder.")
    parser.add_argument("file", nargs="?", help=".nii/.nii.gz/.mha/.nrrd file or .zip of a DICOM series")
    parser.add_argument("--volume-id", help="a volume already in the served store (instead of FILE)")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the endpoint's base URL")
    parser.add_argument("--token", default=None, help="bearer token (default: $MED3D_SERVE_TOKEN)")
    parser.add_argument("--plane", default=None, help="PSAT exports: axial, coronal or sagittal")
    parser.add_argument("--slice-position", type=float, default=None, help="PSAT exports: in [0, 1]")
    parser.add_argument("--json", action="store_true", help="print the whole response as JSON")
    args = parser.parse_args(argv)
    if (args.file is None) == (args.volume_id is None):
        parser.error("give FILE or --volume-id (exactly one)")
    client = EncoderClient(args.url, token=args.token)
    try:
        result = client.embed(args.file, args.volume_id, args.plane, args.slice_position)
    except (ServeClientError, requests.RequestException, OSError) as e:
        print(f"med3d embed: {e}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(result) if args.json else summarize(result))
    return 0
