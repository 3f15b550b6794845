"""Tiny model configs (as factory fixtures) that run forward and backward at 64^3 on CPU in about a second."""

import pytest

from med3dinsight.config.model import BackboneConfig, ModelConfig, PSATConfig

TINY_BACKBONES = {
    "unet_small": dict(feature_size=4, num_levels=3),
    "swin_unetr": dict(
        feature_size=12, swin_depths=[1, 1, 1, 1], swin_num_heads=[1, 1, 1, 1], swin_window_size=4
    ),
    "unetr": dict(feature_size=4, vit_hidden_size=32, vit_mlp_dim=64, vit_num_heads=2),
}


def _backbone(name: str = "unet_small", **kw) -> BackboneConfig:
    return BackboneConfig(name=name, img_size=[64, 64, 64], **(TINY_BACKBONES[name] | kw))


def _psat(**kw) -> PSATConfig:
    base = dict(num_queries=4, dim=32, num_layers=2, num_heads=4, ffn_dim=64, num_slice_bins=16, out_dim=24)
    return PSATConfig(**(base | kw))


@pytest.fixture
def tiny_backbone():
    """tiny_backbone(name="unet_small", **overrides) -> BackboneConfig"""
    return _backbone


@pytest.fixture
def tiny_psat():
    """tiny_psat(**overrides) -> PSATConfig"""
    return _psat


@pytest.fixture
def tiny_model():
    """tiny_model(name="unet_small", **psat_overrides) -> ModelConfig"""
    return lambda name="unet_small", **kw: ModelConfig(backbone=_backbone(name), psat=_psat(**kw))
