"""Request-level checks of the HTTP API, as pure functions: auth, body size, parameters, multipart parsing."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from med3dinsight.config.serve import PLANES, AuthConfig
from med3dinsight.serving import errors
from med3dinsight.serving.errors import ServeError


def resolve_token(auth: AuthConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token requests must carry, or None when auth is off.

    Raises:
        ValueError: when `auth.token_env` names a variable that is unset or empty (refuse to run open).
    """
    environ = os.environ if environ is None else environ
    if auth.token_env:
        token = environ.get(auth.token_env, "")
        if not token:
            raise ValueError(f"auth.token_env names {auth.token_env!r}, which is not set on this replica")
        return token
    return auth.token or None


def check_auth(authorization: str | None, token: str | None) -> None:
    """Accept when auth is off or the `Authorization: Bearer <token>` header matches (constant time).

    Raises:
        ServeError: 401 for a missing, malformed or wrong token.
    """
    if token is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise ServeError(401, errors.UNAUTHORIZED, "missing 'Authorization: Bearer <token>' header")
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise ServeError(401, errors.UNAUTHORIZED, "wrong bearer token")


def request_timeout(configured_s: float, requested: str | None) -> float:
    """The timeout of one request: the configured one, or less when the client asks (`?timeout_s=`).

    Raises:
        ServeError: 422 for a non-numeric or non-positive `timeout_s`.
    """
    if requested is None:
        return configured_s
    try:
        value = float(requested)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ServeError(422, errors.BAD_REQUEST, f"timeout_s must be a positive number, got {requested!r}")
    return min(value, configured_s)


def check_declared_size(content_length: str | None, max_bytes: int) -> None:
    """Refuse early when the declared body is over the limit.

    Raises:
        ServeError: 413 naming both sizes; 422 for a malformed Content-Length.
    """
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise ServeError(422, errors.BAD_REQUEST, f"bad Content-Length {content_length!r}") from None
    if declared > max_bytes:
        raise ServeError(413, errors.PAYLOAD_TOO_LARGE, f"{declared} bytes > limits.max_upload_mb ({max_bytes} bytes)")


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The request body, refusing (413) once more than `max_bytes` have arrived."""
    check_declared_size(request.headers.get("content-length"), max_bytes)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise ServeError(413, errors.PAYLOAD_TOO_LARGE, f"over {max_bytes} bytes (limits.max_upload_mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def slice_params(plane: Any, slice_position: Any) -> tuple[str | None, float | None]:
    """Validate the optional PSAT slice of a request.

    Raises:
        ServeError: 422 for an unknown plane or a position outside [0, 1].
    """
    if plane is not None and plane not in PLANES:
        raise ServeError(422, errors.BAD_REQUEST, f"plane must be one of {PLANES}, got {plane!r}")
    if slice_position is None:
        return plane, None
    try:
        position = float(slice_position)
    except (TypeError, ValueError):
        position = -1.0
    if not 0.0 <= position <= 1.0:
        raise ServeError(422, errors.BAD_REQUEST, f"slice_position must be in [0, 1], got {slice_position!r}")
    return plane, position


async def parse_volume_request(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    """The volume a request names: {"upload": (bytes, filename)} or {"volume_id": str}, plus plane/slice.

    Accepts multipart/form-data with a `file` field (and optional `plane`, `slice_position` fields), or a
    JSON object {"volume_id": ..., "plane": ..., "slice_position": ...}.

    Raises:
        ServeError: 415 for another content type, 422 for a malformed body or missing field.
    """
    content_type = Headers(headers=dict(headers)).get("content-type", "").lower()
    if content_type.startswith("application/json"):
        try:
            payload = json.loads(body or b"null")
        except json.JSONDecodeError as e:
            raise ServeError(422, errors.BAD_REQUEST, f"body is not valid JSON ({e})") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("volume_id"), str):
            raise ServeError(422, errors.BAD_REQUEST, 'JSON body must be {"volume_id": "<16 hex digits>", ...}')
        plane, position = slice_params(payload.get("plane"), payload.get("slice_position"))
        return {"volume_id": payload["volume_id"], "plane": plane, "slice_position": position}
    if content_type.startswith("multipart/form-data"):
        parser = MultiPartParser(Headers(headers=dict(headers)), _once(body), max_files=1, max_fields=8)
        try:
            form = await parser.parse()
        except MultiPartException as e:
            raise ServeError(422, errors.BAD_REQUEST, f"malformed multipart body ({e.message})") from None
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ServeError(422, errors.BAD_REQUEST, "multipart body needs a file field named 'file'")
        data = await upload.read()
        plane, position = slice_params(form.get("plane"), form.get("slice_position"))
        return {"upload": (data, upload.filename or ""), "plane": plane, "slice_position": position}
    raise ServeError(
        415, errors.UNSUPPORTED_MEDIA_TYPE,
        f"Content-Type {content_type or '<none>'!r}: send multipart/form-data (field 'file') or application/json",
    )  # fmt: skip


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body
