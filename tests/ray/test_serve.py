"""The Serve stage end to end on local Ray, loopback, non-default port: one deployment for every case.

Covers embed by upload and by volume_id, parity with the in-process encoder, every bad request (413, 415,
422 x4, 404, 401, 504) leaving the replica serving, cross-caller batching, heads, and the replacement of
a replica whose health check fails (last: it restarts the replica).
"""

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from ray import serve

from med3dinsight.config import load_config
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.config.serve import ServeConfig
from med3dinsight.ingest.pipeline import run_ingest
from med3dinsight.io.catalog import ok_volume_ids
from med3dinsight.io.store import Store
from med3dinsight.serving.app import DEPLOYMENT_NAME
from med3dinsight.serving.client import EncoderClient, ServeClientError
from med3dinsight.serving.deploy import deploy
from med3dinsight.serving.runner import EncoderRunner

from ..unit.serve import serve_helpers as helpers
from .conftest import free_port

pytestmark = pytest.mark.ray
TOKEN = "test-token"
APP = "med3d-test"


@pytest.fixture(scope="module")
def served(local_ray, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    ct = helpers.write_ct(root / "raw" / "ct.nii.gz", seed=1)
    ingest_overrides = [f"input={ct}", f"store={root / 'store'}", "preprocess.target_spacing=[1.5,1.5,2.0]",
                        "zarr.chunk=[16,16,16]", "ray.progress_bars=false"]  # fmt: skip
    ingest = load_config(IngestConfig, overrides=ingest_overrides)
    assert run_ingest(ingest).exit_code == 0
    export = helpers.make_export(root / "model", head="segmentation", ingest=ingest)
    port = free_port()
    overrides = [
        f"model={export}", f"store={root / 'store'}", f"http.port={port}", f"app_name={APP}",
        "replicas.num_cpus=0.5", "replicas.torch_threads=1", f"auth.token={TOKEN}", "limits.max_upload_mb=1",
        "batching.max_batch_size=8", "batching.batch_wait_timeout_s=0.05", "health.period_s=1",
        "health.timeout_s=10",
    ]  # fmt: skip
    cfg = load_config(ServeConfig, ["configs/serve.yaml", "configs/quickstart/serve.yaml"], overrides)
    url = deploy(cfg)
    volume_id = ok_volume_ids(Store(str(root / "store")))[0]
    yield {"url": url, "cfg": cfg, "ct": ct, "volume_id": volume_id, "root": root, "export": export}
    serve.shutdown()


def post(served, path="/v1/embed", token=TOKEN, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(served["url"] + path, headers=headers, timeout=60, **kw)


def upload(path: Path, name: str | None = None) -> dict:
    return {"files": {"file": (name or path.name, path.read_bytes())}}


def test_embed_upload_and_volume_id_match_in_process_encoder(served):
    client = EncoderClient(served["url"], token=TOKEN)
    by_upload = client.embed(served["ct"])
    by_id = client.embed(volume_id=served["volume_id"])
    runner = EncoderRunner(served["export"], served["cfg"])
    prepared = runner.preprocessor.from_upload(served["ct"].read_bytes(), "ct.nii.gz")
    expected = runner.embed_batch([runner.item(prepared)])[0]
    assert by_upload["embedding_dim"] == len(expected) == 32
    np.testing.assert_allclose(by_upload["embedding"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(by_id["embedding"], expected, rtol=1e-5, atol=1e-6)
    assert by_upload["preprocessing"]["preprocess_hash"] == by_id["preprocessing"]["preprocess_hash"]
    assert by_upload["model"] == {"name": "model", "version": runner.version}
    zipped = client.embed(data=helpers.dicom_zip(helpers.ct_image(1), served["root"] / "dcm"), filename="s.zip")
    assert zipped["preprocessing"]["modality"] == "CT" and zipped["embedding_dim"] == 32


def test_bad_requests_get_4xx_and_the_replica_keeps_serving(served, tmp_path):
    before = requests.get(served["url"] + "/healthz", timeout=30).json()
    good = served["ct"]
    cases = [
        (413, "PAYLOAD_TOO_LARGE", dict(files={"file": ("big.nii.gz", b"0" * (2 << 20))})),
        (415, "UNSUPPORTED_MEDIA_TYPE", upload(good, "notes.xyz")),
        (415, "UNSUPPORTED_MEDIA_TYPE", dict(data=b"raw", headers={"Content-Type": "text/plain"})),
        (422, "TRUNCATED", upload(helpers.truncated(tmp_path / "t.nii", helpers.write_ct(tmp_path / "u.nii")))),
        (422, "NON_FINITE", upload(helpers.nifti_with_nan(tmp_path / "nan.nii"))),
        (422, "NOT_3D", upload(helpers.nifti_4d(tmp_path / "4d.nii.gz"))),
        (422, "NON_ORTHONORMAL_DIRECTION", upload(helpers.sheared_nifti(tmp_path / "shear.nii"))),
        (422, "UNREADABLE", dict(files={"file": ("s.zip", b"PK not a zip")})),
        (404, "UNKNOWN_VOLUME", dict(json={"volume_id": "0123456789abcdef"})),
        (404, "UNKNOWN_VOLUME", dict(json={"volume_id": "../../etc/passwd"})),
        (504, "TIMEOUT", dict(params={"timeout_s": "0.001"}, **upload(good))),
    ]
    for status, reason, kw in cases:
        headers = {"Authorization": f"Bearer {TOKEN}", **kw.pop("headers", {})}
        response = requests.post(served["url"] + "/v1/embed", headers=headers, timeout=60, **kw)
        assert (response.status_code, response.json()["reason"]) == (status, reason), response.text
    assert post(served, token=None, **upload(good)).status_code == 401
    assert post(served, token="wrong", **upload(good)).status_code == 401
    assert requests.get(served["url"] + "/v1/models", timeout=30).status_code == 401
    after = requests.get(served["url"] + "/healthz", timeout=30).json()
    assert after == before and after["status"] == "ok", "a bad request must not kill or replace the replica"
    assert post(served, **upload(good)).status_code == 200


def test_concurrent_requests_are_batched(served):
    def call(_: int) -> int:
        response = post(served, json={"volume_id": served["volume_id"]})
        assert response.status_code == 200, response.text
        return response.json()["batch_size"]

    with ThreadPoolExecutor(12) as pool:
        sizes = list(pool.map(call, range(24)))
    assert max(sizes) > 1, f"no batch held more than one request: {sizes}"


def test_models_and_heads(served):
    client = EncoderClient(served["url"], token=TOKEN)
    (info,) = client.models()
    assert info["embedding_dim"] == 32 and info["tasks"] == ["embed", "segmentation"]
    assert info["preprocessing"]["ingest"]["preprocess"]["target_spacing"] == [1.5, 1.5, 2.0]
    result = client.segment(served["ct"])
    path = served["root"] / "labels.nii.gz"
    path.write_bytes(base64.b64decode(result["label_map"]))
    labels, source = sitk.ReadImage(str(path)), sitk.ReadImage(str(served["ct"]))
    assert labels.GetSize() == source.GetSize()
    np.testing.assert_allclose(labels.GetOrigin(), source.GetOrigin(), atol=1e-4)
    with pytest.raises(ServeClientError) as error:
        client.classify(served["ct"])
    assert (error.value.status, error.value.reason) == (404, "NO_HEAD")


def test_replica_failing_its_health_check_is_replaced(served):
    handle = serve.get_deployment_handle(DEPLOYMENT_NAME, app_name=APP)
    old = handle.mark_unhealthy.remote("test: simulated broken device").result()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            health = requests.get(served["url"] + "/healthz", timeout=5)
            if health.status_code == 200 and health.json()["replica"] != old:
                break
        except requests.RequestException:
            pass
        time.sleep(0.5)
    else:
        pytest.fail(f"replica {old} was not replaced within 60 s")
    assert post(served, **upload(served["ct"])).status_code == 200
