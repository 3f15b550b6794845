"""The Python client against a stub HTTP server: request shapes, auth header, error mapping, summary."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from med3dinsight.serving.client import EncoderClient, ServeClientError, summarize

EMBED = {
    "embedding": [3.0, 4.0], "embedding_dim": 2, "model": {"name": "m", "version": "v1"}, "batch_size": 1,
    "preprocessing": {"modality": "CT", "shape_zyx": [4, 5, 6], "spacing": [1, 1, 2],
                      "crop": {"num_windows": 1}, "model_input": {"crop_size": [32, 32, 32]}},
}  # fmt: skip


class Stub(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Stub.seen.append({"path": self.path, "auth": self.headers.get("Authorization"),
                          "type": self.headers.get("Content-Type"), "body": body})  # fmt: skip
        if b"broken" in body:
            self._send(422, {"status": 422, "reason": "TRUNCATED", "message": "broken.nii: truncated"})
        else:
            self._send(200, EMBED)

    def do_GET(self) -> None:  # noqa: N802
        self._send(502, None, raw=b"<html>bad gateway</html>")

    def _send(self, status: int, body: dict | None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def url():
    server = HTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Stub.seen.clear()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_embed_upload_and_volume_id(url, tmp_path):
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(b"voxels")
    client = EncoderClient(url, token="tok")
    assert client.embed(path, plane="axial")["embedding_dim"] == 2
    assert client.embed(volume_id="0123456789abcdef")["model"]["name"] == "m"
    upload, by_id = Stub.seen
    assert upload["path"] == "/v1/embed" and upload["auth"] == "Bearer tok"
    assert upload["type"].startswith("multipart/form-data") and b'filename="ct.nii.gz"' in upload["body"]
    assert b'name="plane"' in upload["body"]
    assert json.loads(by_id["body"]) == {"volume_id": "0123456789abcdef"}


def test_errors_carry_status_and_reason(url):
    client = EncoderClient(url)
    with pytest.raises(ServeClientError) as error:
        client.embed(data=b"broken", filename="broken.nii")
    assert (error.value.status, error.value.reason) == (422, "TRUNCATED")
    with pytest.raises(ServeClientError) as error:
        client.health()
    assert error.value.status == 502 and "bad gateway" in error.value.message
    with pytest.raises(ValueError, match="exactly one"):
        client.embed()


def test_summarize():
    text = summarize(EMBED)
    assert "width 2" in text and "L2 norm 5.0000" in text and "m (version v1)" in text


def test_med3d_embed_command(url, tmp_path, capsys):
    from med3dinsight.cli import main

    path = tmp_path / "ct.nii.gz"
    path.write_bytes(b"voxels")
    assert main(["embed", str(path), "--url", url]) == 0
    assert "width 2" in capsys.readouterr().out
    broken = tmp_path / "broken.nii"
    broken.write_bytes(b"broken")
    assert main(["embed", str(broken), "--url", url]) == 1
    assert "TRUNCATED" in capsys.readouterr().err
