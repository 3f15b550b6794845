"""Load a stage config: schema defaults <- YAML files in order <- `key=value` overrides.

Unknown keys and wrong types raise `ConfigError` naming the key. Configs cross Ray process
boundaries as plain dicts (`config_to_dict`) and are re-typed on arrival (`load_config(schema, data=...)`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import fsspec
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file, override or value that the stage schema does not accept."""


def load_config(
    schema: type[T],
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    data: dict[str, Any] | None = None,
) -> T:
    """Merge schema defaults, `data`, YAML `files` (in order) and dotlist `overrides` into `schema`.

    Args:
        schema: a dataclass type describing the stage config.
        files: YAML files merged in order; later files win.
        overrides: `key=value` strings (omegaconf dotlist syntax), applied last.
        data: a plain dict merged first (how configs are re-typed after crossing a Ray boundary).

    Returns:
        An instance of `schema` whose `__post_init__` validation has run.

    Raises:
        ConfigError: on a missing file, an unknown key, a wrong type or a failed validation.
    """
    merged = OmegaConf.structured(schema)
    layers: list[tuple[str, Any]] = []
    if data is not None:
        layers.append(("<dict>", OmegaConf.create(data)))
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        layers.append((str(path), OmegaConf.load(path)))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    if overrides:
        layers.append(("overrides", OmegaConf.from_dotlist(list(overrides))))
    for origin, layer in layers:
        try:
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{origin}: key '{_full_key(e)}': {_first_line(e)}") from None
    try:
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(f"key '{_full_key(e)}': {_first_line(e)}") from None
    except ValueError as e:  # a schema's __post_init__ validation; its message names the key
        raise ConfigError(str(e)) from None
    _absolute_store(cfg)
    return cfg  # type: ignore[return-value]


def _absolute_store(cfg: Any) -> None:
    """Pin a relative local `store` to this process's working directory.

    Ray Train workers run in another directory, so `store=storage/local` must be resolved where the
    user typed it, before the config crosses a process boundary.
    """
    store = getattr(cfg, "store", None)
    if isinstance(store, str) and store and "://" not in store and not os.path.isabs(store):
        cfg.store = os.path.abspath(store)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, JSON-able dict of a config dataclass (to send across Ray process boundaries)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: str, fs: Any = None) -> None:
    """Write the resolved config as YAML at `path` on fsspec filesystem `fs` (default: the local one)."""
    fs = fs or fsspec.filesystem("file", auto_mkdir=True)
    with fs.open(path, "w") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(config_to_dict(cfg))))


def parse_stage_args(schema: type[T], argv: Sequence[str] | None, prog: str) -> T:
    """Parse `--config A.yaml [B.yaml ...] key=value ...` for a stage entry point.

    Exits with status 2 and a message naming the key on any config error.
    """
    parser = argparse.ArgumentParser(prog=prog, description=f"Run the {prog} stage.")
    parser.add_argument("--config", nargs="+", default=[], help="YAML files merged in order")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, applied last")
    args = parser.parse_args(argv)
    # `--config` is greedy: key=value words that follow its files are overrides, not files.
    files = [c for c in args.config if "=" not in c]
    overrides = [c for c in args.config if "=" in c] + args.overrides
    try:
        cfg = load_config(schema, files, overrides)
    except ConfigError as e:
        parser.exit(2, f"{prog}: config error: {e}\n")
    if args.print_config:
        print(json.dumps(config_to_dict(cfg), indent=2))
        parser.exit(0)
    return cfg


def _full_key(e: OmegaConfBaseException) -> str:
    return str(getattr(e, "full_key", None) or "?")


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__
