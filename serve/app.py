"""Import path of the encoder app for the Serve CLI (the library does the work: med3dinsight.serving).

    serve run serve.app:app_builder config=configs/serve.yaml,configs/quickstart/serve.yaml model=<path>
    serve deploy serve/serve_config.yaml          # import_path: serve.app:app_builder, args below it
    MED3D_SERVE_CONFIG=configs/serve.yaml MED3D_SERVE_OVERRIDES="model=<name>" serve run serve.app:app

`app_builder` takes `config` (YAML files, comma-separated) and any other key as a dotlist override.
`app` is built on first access from $MED3D_SERVE_CONFIG / $MED3D_SERVE_OVERRIDES. Nothing runs at import.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from ray.serve import Application

from med3dinsight.config import load_config
from med3dinsight.config.serve import ServeConfig
from med3dinsight.serving.app import build_app


def app_builder(args: dict[str, Any]) -> Application:
    """Serve application builder: `config` = comma-separated YAML files; other keys are overrides."""
    args = dict(args)
    files = [f for f in str(args.pop("config", "configs/serve.yaml")).split(",") if f]
    overrides = [f"{key}={value}" for key, value in args.items()]
    return build_app(load_config(ServeConfig, files, overrides))


def __getattr__(name: str) -> Application:
    if name != "app":
        raise AttributeError(name)
    overrides = shlex.split(os.environ.get("MED3D_SERVE_OVERRIDES", ""))
    return app_builder({"config": os.environ.get("MED3D_SERVE_CONFIG", "configs/serve.yaml"),
                        **dict(o.split("=", 1) for o in overrides)})  # fmt: skip
