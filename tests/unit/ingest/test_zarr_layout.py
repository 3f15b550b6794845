"""The stored array layout: codec per dtype, shards, background padding, all read back exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from med3dinsight.config import load_config
from med3dinsight.config.ingest import CODEC_LEVELS, IngestConfig
from med3dinsight.ingest.volume import ingest_volume
from med3dinsight.io.ome_zarr_writer import downsample
from med3dinsight.io.volume_reader import open_volume

from .ingest_helpers import file_source, make_cfg, write_image


def array_metadata(row: dict, level: int = 0) -> dict:
    return json.loads((Path(row["path"]) / str(level) / "zarr.json").read_text())


def codec_names(metadata: dict) -> list[str]:
    names = []
    for codec in metadata["codecs"]:
        names.append(codec["name"])
        names += [inner["name"] for inner in codec.get("configuration", {}).get("codecs", [])]
    return names


def test_images_use_pcodec_and_label_maps_fall_back_to_blosc(tmp_path, store, ct_image, ct_labels):
    cfg = make_cfg()
    image_row = ingest_volume(file_source(write_image(ct_image, tmp_path / "ct.nii.gz")), cfg, store)
    label_row = ingest_volume(file_source(write_image(ct_labels, tmp_path / "seg.nii.gz")), cfg, store, is_label=True)
    image_meta, label_meta = array_metadata(image_row), array_metadata(label_row)
    assert "numcodecs.pcodec" in codec_names(image_meta)
    assert image_meta["codecs"][0]["configuration"]["level"] == CODEC_LEVELS["pcodec"][2]
    assert "blosc" in codec_names(label_meta) and "numcodecs.pcodec" not in codec_names(label_meta)
    np.testing.assert_array_equal(open_volume(store, label_row["volume_id"]).level(0)[...],
                                  sitk.GetArrayFromImage(ct_labels))  # fmt: skip


def test_edge_chunks_are_padded_with_the_background(tmp_path, store, ct_image):
    row = ingest_volume(file_source(write_image(ct_image, tmp_path / "ct.nii.gz")), make_cfg(), store)
    volume = open_volume(store, row["volume_id"])
    assert array_metadata(row)["fill_value"] == volume.background == -1024


def test_sharded_volume_reads_back_exactly(tmp_path, store, ct_image):
    cfg = make_cfg("zarr.chunk=[8,8,8]", "zarr.shard=[16,16,32]")
    row = ingest_volume(file_source(write_image(ct_image, tmp_path / "ct.nii.gz")), cfg, store)
    meta = array_metadata(row)
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [16, 16, 32]
    assert codec_names(meta)[0] == "sharding_indexed"
    objects = [p for p in (Path(row["path"]) / "0" / "c").rglob("*") if p.is_file()]
    assert len(objects) == 2 * 2 * 2  # (20, 28, 36) voxels in 16 x 16 x 32 shards
    volume = open_volume(store, row["volume_id"])
    expected = np.clip(sitk.GetArrayFromImage(ct_image), -1024, 3071)
    np.testing.assert_array_equal(volume.level(0)[...], expected)
    np.testing.assert_array_equal(volume.read_crop((3, 5, 7), (12, 20, 25)), expected[3:15, 5:25, 7:32])
    assert array_metadata(row, 1)["chunk_grid"]["configuration"]["chunk_shape"] == [16, 16, 24]  # clipped


@pytest.mark.parametrize("codec", list(CODEC_LEVELS))
def test_clevel_null_takes_the_codec_default(codec):
    cfg = load_config(IngestConfig, overrides=["input=x", f"zarr.codec={codec}"])
    assert cfg.zarr.clevel is None and cfg.zarr.level == CODEC_LEVELS[codec][2]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.float32])
def test_downsample_is_the_rounded_block_mean(dtype):
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    low, high = (info.min, info.max) if info else (-1e4, 1e4)
    voxels = rng.uniform(low, high, (9, 12, 7)).astype(dtype)  # odd sizes: edge-replicated
    padded = np.pad(voxels.astype(np.float64), [(0, 1), (0, 0), (0, 1)], mode="edge")
    reference = padded.reshape(5, 2, 6, 2, 4, 2).mean(axis=(1, 3, 5))
    if info:
        reference = np.rint(reference)
    out = downsample(voxels, is_label=False)
    assert out.dtype == dtype and out.shape == (5, 6, 4)
    np.testing.assert_array_equal(out, reference.astype(dtype))
    np.testing.assert_array_equal(downsample(voxels, is_label=True), voxels[::2, ::2, ::2])
