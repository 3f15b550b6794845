"""`med3d` dispatches every stage; a bad key exits 2 naming it, before Ray starts."""

import pytest

from med3dinsight.cli import COMMANDS, main


def test_every_stage_has_a_command() -> None:
    assert {"ingest", "caption", "pretrain", "finetune", "sweep", "serve", "embed", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("stage", ["ingest", "caption", "pretrain", "finetune", "sweep", "serve"])
def test_bad_key_exits_2(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "no_such_key=1"])
    assert exit_info.value.code == 2
    assert "no_such_key" in capsys.readouterr().err


def test_unknown_command() -> None:
    assert main(["nope"]) == 2


def test_training_stage_without_inputs_exits_2_before_ray(
    tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from med3dinsight.utils import stage_runner

    monkeypatch.setattr(stage_runner, "ray_session", lambda *a: pytest.fail("Ray started before the input check"))
    code = main(["pretrain", f"store={tmp_path}", "experiment=x"])
    assert code == 2 and "no captions" in capsys.readouterr().err
