"""Training configs: shipped files load, bad values fail naming the key."""

from pathlib import Path

import pytest

from med3dinsight.config import ConfigError, config_to_dict, load_config
from med3dinsight.config.finetune import FinetuneConfig
from med3dinsight.config.pretrain import PretrainConfig
from med3dinsight.config.sweep import SweepConfig
from med3dinsight.train.ray_config import scaling_config

ROOT = Path(__file__).resolve().parents[3]
C = ROOT / "configs"


def test_shipped_pretrain_configs_load_and_round_trip() -> None:
    cluster = load_config(PretrainConfig, [C / "pretrain.yaml", C / "h200x8.yaml"], ["experiment=e"])
    assert (cluster.optim.name, cluster.optim.lr, cluster.optim.weight_decay) == ("adam", 1e-5, 1e-5)
    assert (cluster.loss.mass, cluster.loss.eps, cluster.data.batch_size) == (0.95, 0.03, 10)
    scaling = scaling_config(cluster.scaling)
    assert scaling.num_workers == (4, 8) and scaling.accelerator_type == "H200" and scaling.use_gpu
    assert scaling.resources_per_worker == {"CPU": 16, "GPU": 1}
    quick = load_config(PretrainConfig, [C / "pretrain.yaml", C / "quickstart/pretrain.yaml"], ["experiment=e"])
    assert quick.crop_size == [32, 32, 32] and quick.scaling.num_workers == 2 and not quick.scaling.use_gpu
    assert load_config(PretrainConfig, data=config_to_dict(quick)) == quick


@pytest.mark.parametrize("task_file", ["seg.yaml", "cls.yaml"])
def test_shipped_finetune_configs_load(task_file: str) -> None:
    extra = ["experiment=e", "data.labels_csv=x.csv"]
    cfg = load_config(FinetuneConfig, [C / "finetune" / task_file, C / "quickstart/finetune.yaml"], extra)
    assert cfg.backbone.name == "unet_small" and cfg.metric in ("val_mean_dice", "val_auc")
    load_config(FinetuneConfig, [C / "finetune" / task_file, C / "h200x8.yaml"], extra)


def test_shipped_sweep_configs_load() -> None:
    cfg = load_config(SweepConfig, [C / "sweep.yaml"], ["experiment=s"])
    assert cfg.stage == "pretrain" and "optim.lr" in cfg.search_space
    quick = load_config(SweepConfig, [C / "quickstart/sweep.yaml"], ["experiment=s"])
    assert quick.stage == "finetune" and quick.search_space["optim.lr"] == {"grid": [1e-3, 3e-3]}


@pytest.mark.parametrize(
    ("schema", "overrides", "names"),
    [
        (PretrainConfig, [], "experiment"),
        (PretrainConfig, ["experiment=a/b"], "experiment"),
        (PretrainConfig, ["experiment=e", "max_steps=0"], "max_steps"),
        (PretrainConfig, ["experiment=e", "report_every=0"], "report_every"),
        (PretrainConfig, ["experiment=e", "data.small_volumes=crop"], "data.small_volumes"),
        (PretrainConfig, ["experiment=e", "data.slice_position=middle"], "data.slice_position"),
        (PretrainConfig, ["experiment=e", "data.quality=[]"], "data.quality"),
        (PretrainConfig, ["experiment=e", "data.reader_actors=[2,1]"], "data.reader_actors"),
        (PretrainConfig, ["experiment=e", "data.augment.flip_prob=2"], "augment.flip_prob"),
        (PretrainConfig, ["experiment=e", "data.input.ct_window=[10,-10]"], "ct_window"),
        (PretrainConfig, ["experiment=e", "optim.name=lamb"], "optim.name"),
        (PretrainConfig, ["experiment=e", "optim.schedule=step"], "optim.schedule"),
        (PretrainConfig, ["experiment=e", "optim.lr=0"], "optim.lr"),
        (PretrainConfig, ["experiment=e", "scaling.num_workers=-1"], "scaling.num_workers"),
        (PretrainConfig, ["experiment=e", "scaling.num_workers=2", "scaling.min_workers=3"], "scaling.min_workers"),
        (PretrainConfig, ["experiment=e", "checkpoint.every_steps=0"], "checkpoint.every_steps"),
        (PretrainConfig, ["experiment=e", "checkpoint.max_failures=-2"], "checkpoint.max_failures"),
        (PretrainConfig, ["experiment=e", "model.backbone.img_size=[30,32,32]"], "img_size"),
        (FinetuneConfig, ["experiment=e", "task=detection"], "task"),
        (FinetuneConfig, ["experiment=e", "num_classes=1"], "num_classes"),
        (FinetuneConfig, ["experiment=e", "task=classification"], "labels_csv"),
        (FinetuneConfig, ["experiment=e", "data.val_fraction=1"], "data.val_fraction"),
        (FinetuneConfig, ["experiment=e", "data.labelled_fraction=0"], "data.labelled_fraction"),
        (FinetuneConfig, ["experiment=e", "data.class_names=[a]"], "class_names"),
        (FinetuneConfig, ["experiment=e", "sw_overlap=1"], "sw_overlap"),
        (SweepConfig, ["experiment=s"], "search_space"),
        (SweepConfig, ["experiment=s", "stage=serve", "search_space={a: {choice: [1]}}"], "stage"),
        (SweepConfig, ["experiment=s", "search_space={optim.lr: {normal: [1, 2]}}"], "search_space"),
        (SweepConfig, ["experiment=s", "search_space={a: {choice: [1]}}", "mode=up"], "mode"),
        (SweepConfig, ["experiment=s", "search_space={a: {choice: [1]}}", "asha.reduction_factor=1"], "asha"),
    ],
)
def test_bad_training_config_names_the_key(schema: type, overrides: list[str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_config(schema, overrides=overrides)
