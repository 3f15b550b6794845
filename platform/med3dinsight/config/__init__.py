"""Typed stage configs: dataclass schema + YAML files + dotlist overrides (omegaconf)."""

from med3dinsight.config.loader import ConfigError, config_to_dict, load_config, parse_stage_args, save_config

__all__ = ["ConfigError", "config_to_dict", "load_config", "parse_stage_args", "save_config"]
