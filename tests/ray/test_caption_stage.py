"""The caption stage end to end on a local Ray with the tiny models: rows, columns, embeddings, reruns, resume."""

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import SimpleITK as sitk

from med3dinsight.captioning.outputs import KEY, PART_SCHEMA, RunPaths, part_files, table_bytes
from med3dinsight.captioning.pipeline import run_caption
from med3dinsight.captioning.reader import CaptionRun
from med3dinsight.captioning.tiny_models import build_tiny_models
from med3dinsight.config import load_config
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.config.ingest import IngestConfig
from med3dinsight.data.phantoms import mr_phantom
from med3dinsight.ingest.pipeline import run_ingest
from med3dinsight.io.catalog import ok_volume_ids
from med3dinsight.io.store import Store

from .volumes import write_inputs

pytestmark = pytest.mark.ray
PLANES, PER_PLANE = ["axial", "coronal", "sagittal"], 2


@pytest.fixture(scope="module")
def caption_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("caption")
    write_inputs(root / "raw")  # 2 CT volumes + 2 inputs ingest rejects
    mr, _ = mr_phantom((16, 20, 24), (1.2, 1.0, 2.0), seed=4)
    sitk.WriteImage(sitk.DICOMOrient(mr, "RAI"), str(root / "raw" / "mr.nii.gz"))
    # Stored as RAS (not the LPS default) so that slicing must follow a non-identity direction.
    ingest = load_config(IngestConfig, overrides=[
        f"input={root / 'raw'}", f"store={root / 'store'}", "zarr.chunk=[16,16,16]", "preprocess.orientation=RAS",
        "preprocess.modality=auto", "ray.progress_bars=false"])  # fmt: skip
    run_ingest(ingest)
    return root / "store", build_tiny_models(root / "models")


def caption_config(store: Path, models: dict[str, Path], *extra: str) -> CaptionConfig:
    return load_config(CaptionConfig, overrides=[
        f"store={store}", "run=test", f"slices.planes=[{','.join(PLANES)}]", f"slices.slices_per_plane={PER_PLANE}",
        "slices.strategy=foreground", "render.image_size=48", f"captioner.model={models['vlm']}",
        "captioner.max_new_tokens=6", "captioner.batch_size=4", "captioner.num_gpus=0", "captioner.num_cpus=0.5",
        f"embedder.image.model={models['clip']}", f"embedder.text.model={models['clip']}", "embedder.num_cpus=0.5",
        "render_num_cpus=0.5", "write_batch_size=4", "gallery.thumbnail_size=32", *extra])  # fmt: skip


def test_caption_stage_rows_rerun_and_resume(local_ray: None, caption_store: tuple[Path, dict[str, Path]]) -> None:
    store_root, models = caption_store
    cfg = caption_config(store_root, models)
    store = Store(str(store_root))
    volume_ids = ok_volume_ids(store)
    assert len(volume_ids) == 3

    summary = run_caption(cfg)
    expected_rows = len(volume_ids) * len(PLANES) * PER_PLANE
    assert (summary.generated, summary.failed, summary.total_rows, summary.exit_code) == (expected_rows, 0, 18, 0)
    assert len(summary.skipped) == 2 and all("rejected by ingest" in m for m in summary.skipped)

    run_dir = store_root / "captions" / "test"
    table = pq.read_table(run_dir / "captions.parquet")
    assert set(table.column_names) == {n for n in PART_SCHEMA.names if n not in (
        "image_embedding", "text_embedding", "thumbnail_png")} | {"row"}  # fmt: skip
    rows = table.to_pylist()
    assert {(r["volume_id"], r["plane"]) for r in rows} == {(v, p) for v in volume_ids for p in PLANES}
    assert len({tuple(r[k] for k in KEY) for r in rows}) == expected_rows
    for r in rows:
        assert r["error"] is None and r["quality"] in ("ok", "empty", "degenerate", "repetitive")
        assert r["model"] == str(models["vlm"]) and len(r["model_hash"]) == 16 and r["revision"] is None
        assert r["prompt_id"].startswith("describe-") and r["modality"] in r["prompt"] and r["plane"] in r["prompt"]
        assert r["generated_tokens"] > 0 and '"max_new_tokens": 6' in r["generation"] and r["seed"] == 0
        assert 0.0 <= r["position"] <= 1.0 and r["image_encoder"].startswith("hf_clip:")
    assert {r["modality"] for r in rows} == {"CT", "MR"}
    assert {r["window"] for r in rows} == {"ct:soft_tissue", "mr:p1-99"}

    image_ND, text_ND = np.load(run_dir / "image_embeddings.npy"), np.load(run_dir / "text_embeddings.npy")
    assert image_ND.shape == (18, 16) and text_ND.shape == (18, 16) and image_ND.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(image_ND, axis=1), 1.0, rtol=1e-5)
    captions = CaptionRun(store, "test")
    assert captions.meta["image_width"] == 16 and captions.meta["num_rows"] == 18
    first = rows[5]
    got = captions.get(first["volume_id"], first["plane"], first["slice_index"])
    assert got["caption"] == first["caption"]
    np.testing.assert_array_equal(got["text_embedding"], text_ND[first["row"]])
    gallery = (run_dir / "gallery.html").read_text()
    assert gallery.count("data:image/png;base64,") == 18
    assert all(f'class="flag {r["quality"]}"' in gallery for r in rows)
    assert (run_dir / "config.yaml").is_file() and "captioner" in (run_dir / "config.yaml").read_text()

    plans = sorted((run_dir / "plans").glob("*.json"))
    assert len(plans) == 3, "foreground plans are recorded so that a rerun knows them without the voxels"
    again = run_caption(cfg)
    assert (again.generated, again.pending_volumes, again.total_rows) == (0, 0, 18), "a rerun does nothing"
    assert pq.read_table(run_dir / "captions.parquet").drop(["row"]).equals(table.drop(["row"]))

    # A crash: one part file lost, one batch's generations failed, a half-written temp file left behind.
    parts = part_files(RunPaths(store, "test"))
    lost = pq.read_table(parts[0]).num_rows
    Path(parts[0]).unlink()
    failed = pq.read_table(parts[1]).to_pylist()
    for r in failed:
        r.update(caption="", error="RuntimeError: simulated", quality="failed")
    Path(parts[1]).write_bytes(table_bytes(pq.read_table(parts[1]).from_pylist(failed, schema=PART_SCHEMA)))
    Path(parts[2] + ".0123.tmp").write_bytes(b"half a parquet")
    partial = run_caption(cfg)  # consolidation keeps the failed rows visible until they succeed
    resumed = pq.read_table(run_dir / "captions.parquet").to_pylist()
    assert partial.generated == lost + len(failed) and partial.failed == 0 and partial.total_rows == 18
    assert all(r["error"] is None for r in resumed)
    assert [r["caption"] for r in resumed] == [r["caption"] for r in rows], "greedy + seed: same captions"
