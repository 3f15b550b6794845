"""Med3DInsight: 3D medical encoder pretraining aided by 2D multimodal LLMs, as a Ray platform."""

__version__ = "0.1.0"
