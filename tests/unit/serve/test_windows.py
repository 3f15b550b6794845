"""The crop / sliding-window policy and the training input policy (pure, hand-checked cases)."""

import numpy as np
import pytest

from med3dinsight.serving.windows import (
    axis_starts,
    extract_window,
    model_input_policy,
    stitch_logits,
    window_starts,
)


@pytest.mark.parametrize(
    ("length", "crop", "overlap", "count", "expected"),
    [
        (32, 32, 0.25, None, [0]),
        (20, 32, 0.25, None, [-6]),          # smaller than the crop: one window padded on both sides
        (64, 32, 0.0, None, [0, 32]),
        (64, 32, 0.5, None, [0, 16, 32]),
        (70, 32, 0.25, None, [0, 19, 38]),   # step 24 -> 3 windows spread evenly to the end
        (70, 32, 0.25, 1, [19]),             # capped to one: centred
    ],
)
def test_axis_starts(length, crop, overlap, count, expected):
    assert axis_starts(length, crop, overlap, count) == expected


def test_window_starts_modes_and_cap():
    assert window_starts((20, 64, 64), (32, 32, 32), "center", 0.25, 8) == [(-6, 16, 16)]
    full = window_starts((64, 96, 96), (32, 32, 32), "sliding_window", 0.0, 100)
    assert len(full) == 2 * 3 * 3
    capped = window_starts((64, 96, 96), (32, 32, 32), "sliding_window", 0.0, 4)
    assert capped == [(16, 0, 0), (16, 0, 64), (16, 64, 0), (16, 64, 64)]  # (2,3,3) -> (2,2,3) -> ... -> (1,2,2)


def test_extract_window_pads_with_fill():
    volume = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    crop = extract_window(volume, (-1, 0, 1), (3, 3, 3), fill=-5.0)
    assert crop.shape == (3, 3, 3)
    assert np.all(crop[0] == -5.0) and np.all(crop[:, :, 2] == -5.0)
    np.testing.assert_array_equal(crop[1:, :, :2], volume[:2, :, 1:])


def test_stitch_logits_averages_overlaps_and_defaults_to_background():
    logits = np.stack([np.full((2, 2, 2, 2), v, np.float32) for v in (1.0, 3.0)])
    logits[:, 0] = 0.0
    out = stitch_logits(logits, [(0, 0, 0), (0, 0, 1)], (2, 2, 4))
    np.testing.assert_allclose(out[1, 0, 0], [1.0, 2.0, 3.0, 0.0])
    assert out.argmax(0)[0, 0, 3] == 0


def test_model_input_policy_prefers_finetune_then_pretrain_then_backbone():
    base = {"backbone": {"img_size": [64, 64, 64]}}
    assert model_input_policy(base) == {"crop_size": [64, 64, 64], "ct_window_hu": [-1000.0, 1000.0]}
    pre = {"input": {"ct_window_hu": [-200, 300]}, "crop": {"size_zyx": [32, 48, 48]}}
    expected = {"crop_size": [32, 48, 48], "ct_window_hu": [-200.0, 300.0]}
    assert model_input_policy(base | {"preprocessing": pre}) == expected
    tuned = pre | {"finetune_input": {"ct_window_hu": [-100, 100], "crop_zyx": [16, 16, 16]}}
    assert model_input_policy(base | {"preprocessing": tuned})["crop_size"] == [16, 16, 16]
    with pytest.raises(ValueError, match="ct_window_hu"):
        model_input_policy(base | {"preprocessing": {"input": {"ct_window_hu": [5, 1]}}})
