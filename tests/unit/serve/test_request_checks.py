"""Request validation of the HTTP API: auth, sizes, timeouts, slice parameters, body parsing (no Ray)."""

import asyncio

import pytest

from med3dinsight.config.serve import AuthConfig
from med3dinsight.serving.errors import ServeError
from med3dinsight.serving.request_checks import (
    check_auth,
    check_declared_size,
    parse_volume_request,
    request_timeout,
    resolve_token,
    slice_params,
)


@pytest.mark.parametrize(
    ("header", "token", "ok"),
    [
        (None, None, True),
        ("Bearer anything", None, True),
        ("Bearer s3cret", "s3cret", True),
        ("bearer s3cret", "s3cret", True),
        (None, "s3cret", False),
        ("Bearer wrong", "s3cret", False),
        ("Basic s3cret", "s3cret", False),
        ("Bearer ", "s3cret", False),
    ],
)
def test_check_auth(header, token, ok):
    if ok:
        check_auth(header, token)
    else:
        with pytest.raises(ServeError) as error:
            check_auth(header, token)
        assert error.value.status == 401


def test_resolve_token_prefers_the_environment_and_refuses_an_unset_variable():
    assert resolve_token(AuthConfig()) is None
    assert resolve_token(AuthConfig(token="t")) == "t"
    assert resolve_token(AuthConfig(token="t", token_env="TOK"), {"TOK": "env"}) == "env"
    with pytest.raises(ValueError, match="TOK"):
        resolve_token(AuthConfig(token_env="TOK"), {})


@pytest.mark.parametrize(("requested", "expected"), [(None, 30.0), ("2.5", 2.5), ("100", 30.0)])
def test_request_timeout(requested, expected):
    assert request_timeout(30.0, requested) == expected


@pytest.mark.parametrize("requested", ["0", "-1", "soon", "nan"])
def test_request_timeout_refuses_nonsense(requested):
    with pytest.raises(ServeError) as error:
        request_timeout(30.0, requested)
    assert error.value.status == 422


def test_check_declared_size():
    check_declared_size(None, 10)
    check_declared_size("10", 10)
    with pytest.raises(ServeError) as error:
        check_declared_size("11", 10)
    assert (error.value.status, error.value.reason) == (413, "PAYLOAD_TOO_LARGE")
    with pytest.raises(ServeError):
        check_declared_size("many", 10)


@pytest.mark.parametrize(
    ("plane", "position", "ok"),
    [(None, None, True), ("axial", "0.25", True), ("sagittal", 1, True), ("oblique", None, False),
     (None, "1.5", False), (None, "x", False)],
)  # fmt: skip
def test_slice_params(plane, position, ok):
    if ok:
        assert slice_params(plane, position)[0] == plane
    else:
        with pytest.raises(ServeError):
            slice_params(plane, position)


def multipart(fields: dict[str, tuple[str | None, bytes]]) -> tuple[dict[str, str], bytes]:
    boundary = "m3dboundary"
    parts = []
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        parts.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}, body


def test_parse_volume_request_bodies():
    headers, body = multipart({"file": ("ct.nii.gz", b"\x00\x01"), "plane": (None, b"coronal")})
    parsed = asyncio.run(parse_volume_request(headers, body))
    assert parsed == {"upload": (b"\x00\x01", "ct.nii.gz"), "plane": "coronal", "slice_position": None}
    parsed = asyncio.run(parse_volume_request({"content-type": "application/json"}, b'{"volume_id": "ab"}'))
    assert parsed["volume_id"] == "ab"
    bad = [
        ({"content-type": "text/plain"}, b"x", 415),
        ({"content-type": "application/json"}, b"{not json", 422),
        ({"content-type": "application/json"}, b'{"id": 1}', 422),
        (*multipart({"other": ("a.nii", b"x")}), 422),
    ]
    for headers, body, status in bad:
        with pytest.raises(ServeError) as error:
            asyncio.run(parse_volume_request(headers, body))
        assert error.value.status == status, (headers, body)
