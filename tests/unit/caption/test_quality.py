"""Caption quality flags: hand-checked cases for each flag."""

import pytest

from med3dinsight.captioning.quality import longest_run, quality_flag, repeated_ngram_fraction, words
from med3dinsight.config.caption import QualityConfig


@pytest.mark.parametrize(
    ("text", "error", "flag"),
    [
        ("Axial CT slice showing the liver, spleen and both kidneys.", None, "ok"),
        ("The liver is enlarged; no focal lesion is seen in the right lobe.", None, "ok"),
        ("", None, "empty"),
        ("   \n\t", None, "empty"),
        (None, None, "empty"),
        ("liver.", None, "degenerate"),
        ("12 34 56 78 !! ??", None, "degenerate"),
        ("the the the the liver", None, "repetitive"),
        ("slice image medical image medical image medical image medical", None, "repetitive"),
        ("a normal chest. a normal chest. a normal chest. a normal chest.", None, "repetitive"),
        ("anything at all here", "RuntimeError: CUDA out of memory", "failed"),
    ],
)
def test_quality_flag(text: str | None, error: str | None, flag: str) -> None:
    assert quality_flag(text, QualityConfig(), error) == flag


def test_helpers() -> None:
    assert words("It's the L4-L5 disc.") == ["it's", "the", "l4", "l5", "disc"]
    assert repeated_ngram_fraction(["a", "b", "a", "b"], 2) == pytest.approx(1 / 3)
    assert repeated_ngram_fraction(["a"], 3) == 0.0
    assert longest_run(["a", "b", "b", "b", "a"]) == 3 and longest_run([]) == 0


def test_thresholds_come_from_config() -> None:
    assert quality_flag("the the the the liver", QualityConfig(max_word_run=4)) == "ok"
    assert quality_flag("liver lesion", QualityConfig(min_words=2)) == "ok"
