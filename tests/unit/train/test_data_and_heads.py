"""Caption index and items from a store, early errors, split, metrics, and the task-head export."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from med3dinsight.config import load_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.config.model import BackboneConfig
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.io.store import Store
from med3dinsight.models.backbones import build_backbone
from med3dinsight.models.export import save_encoder
from med3dinsight.models.head_export import load_task_net, save_task_net
from med3dinsight.models.heads import build_task_net
from med3dinsight.train.caption_index import NoCaptionsError, load_caption_index
from med3dinsight.train.crops import CropTooLargeError
from med3dinsight.train.finetune import check_encoder_architecture
from med3dinsight.train.finetune_data import LabelledItem, random_crop, split_items
from med3dinsight.train.metrics import macro_auc, roc_auc, summarize_dice
from med3dinsight.train.pretrain_data import make_item


def pretrain_cfg(store: Store, *extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, overrides=[
        "experiment=e", f"store={store.root}", "model.backbone.name=unet_small", "model.backbone.img_size=[16,16,16]",
        "model.backbone.num_levels=2", "model.psat.out_dim=8", *extra])  # fmt: skip


def test_index_filters_quality_and_items_hold_the_slice(tiny_store: Store) -> None:
    everything = load_caption_index(tiny_store, "default", ["ok", "empty"], [16, 16, 16])
    ok_only = load_caption_index(tiny_store, "default", ["ok"], [16, 16, 16])
    assert len(everything) == 2 * 3 * 2 and len(ok_only) == len(everything) // 2
    cfg = pretrain_cfg(tiny_store, "data.augment.flip_prob=0.5")
    volumes: dict = {}
    item = make_item(5, everything, cfg, volumes)
    assert item["image"].shape == (1, 16, 16, 16) and item["image"].dtype == np.float32
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert 0 <= item["plane"] <= 2 and 0.0 <= item["slice_pos"] < 1.0 and item["image_emb"].shape == (8,)
    again = make_item(5, everything, cfg, {})
    assert all(np.array_equal(item[k], again[k]) for k in item)  # a pure function of (seed, index)


def test_no_captions_and_crop_too_large_fail_early(tiny_store: Store, tmp_path: Path) -> None:
    with pytest.raises(NoCaptionsError, match="caption run 'other' not found.*available: \\['default'\\]"):
        load_caption_index(tiny_store, "other", ["ok"], [16, 16, 16])
    with pytest.raises(NoCaptionsError, match="pass the filters"):
        load_caption_index(tiny_store, "default", ["repetitive"], [16, 16, 16])
    with pytest.raises(NoCaptionsError, match="no captions in"):
        load_caption_index(Store(str(tmp_path / "empty")), "default", ["ok"], [16, 16, 16])
    with pytest.raises(CropTooLargeError, match="larger than volume"):
        load_caption_index(tiny_store, "default", ["ok"], [32, 32, 32])
    padded = load_caption_index(tiny_store, "default", ["ok"], [32, 32, 32], small_volumes="pad")
    skipped = load_caption_index(tiny_store, "default", ["ok"], [20, 24, 24], small_volumes="skip")  # MR: 16 < 20
    assert len(padded.volume_ids) == 2 and skipped.modalities == ["CT"]


def test_split_is_seeded_and_keeps_the_labelled_fraction() -> None:
    items = [LabelledItem(f"v{i}") for i in range(10)]
    train, val = split_items(items, 0.2, seed=1)
    assert len(val) == 2 and len(train) == 8 and not {i.volume_id for i in train} & {i.volume_id for i in val}
    assert (train, val) == split_items(items, 0.2, seed=1) and val != split_items(items, 0.2, seed=2)[1]
    assert len(split_items(items, 0.2, seed=1, labelled_fraction=0.25)[0]) == 2
    with pytest.raises(ValueError, match="at least 2"):
        split_items(items[:1], 0.2, 0)


def test_foreground_crops_hold_labels() -> None:
    image = np.zeros((30, 30, 30), np.float32)
    label = np.zeros((30, 30, 30), np.int64)
    label[2:5, 25:28, 3:6] = 2
    rng = np.random.default_rng(0)
    assert all(random_crop(rng, image, label, (8, 8, 8), 1.0)[1].any() for _ in range(20))
    x, y = random_crop(rng, np.ones((4, 40, 40), np.float32), None, (8, 8, 8))
    assert x.shape == (8, 8, 8) and y is None and x.sum() == 4 * 64  # padded with zeros beyond the volume


def test_auc_and_dice_summaries_hand_checked() -> None:
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert roc_auc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([1, 1])))
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    assert macro_auc(probs, np.array([0, 1, 1])) == 1.0
    dice = summarize_dice(np.array([[0.5, np.nan], [0.7, 0.2]]), ["bg", "a", "b"])
    assert dice == pytest.approx({"val_dice_a": 0.6, "val_dice_b": 0.2, "val_mean_dice": 0.4})


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_task_head_export_round_trip(task: str, tmp_path: Path) -> None:
    cfg = BackboneConfig(name="unet_small", img_size=[16, 16, 16], feature_size=4, num_levels=2)
    net = build_task_net(task, cfg, 3).eval()
    save_task_net(net, task, cfg, tmp_path, 3, ["bg", "a", "b"], metrics={"val": 0.5}, source_run="r")
    loaded, record = load_task_net(tmp_path)
    x = torch.rand(2, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), loaded(x), atol=1e-6)
    expected = (2, 3, 16, 16, 16) if task == "segmentation" else (2, 3)
    assert net(x).shape == expected and record["task"] == task and record["class_names"] == ["bg", "a", "b"]


def test_encoder_of_another_architecture_is_refused(tmp_path: Path) -> None:
    trained = BackboneConfig(name="unet_small", img_size=[16, 16, 16], feature_size=4, num_levels=2)
    save_encoder(build_backbone(trained), tmp_path / "enc")
    cfg = load_config(FinetuneConfig, overrides=["experiment=f", f"encoder={tmp_path / 'enc'}"],
                      data={"backbone": dataclasses.asdict(trained)})  # fmt: skip
    assert check_encoder_architecture(cfg, str(tmp_path / "enc"))["backbone"]["feature_size"] == 4
    other = dataclasses.replace(cfg, backbone=dataclasses.replace(trained, feature_size=8, num_levels=3))
    with pytest.raises(ValueError, match="different architecture: backbone.feature_size: encoder has 4, config has 8"):
        check_encoder_architecture(other, str(tmp_path / "enc"))
