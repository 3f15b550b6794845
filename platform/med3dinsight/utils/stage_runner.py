"""The shared body of the training-stage entry points (jobs.pretrain/finetune/sweep, `med3d ...`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from med3dinsight.config import parse_stage_args
from med3dinsight.utils.ray_session import ray_session

T = TypeVar("T")


def run_training_stage(
    prog: str,
    schema: type[T],
    run: Callable[[T], dict[str, Any]],
    argv: Sequence[str] | None,
    check: Callable[[T], None] | None = None,
) -> int:
    """Parse the config, check inputs before Ray starts, run the stage in a Ray session, print its outputs.

    Args:
        prog: the name used in messages (e.g. "jobs.pretrain").
        schema: the stage config dataclass.
        run: the library function that runs the stage and returns its outputs.
        argv: `--config ... key=value ...` (None: sys.argv).
        check: optional input check that raises ValueError before any Ray start-up.

    Returns:
        0 on success, 2 on a config or input error (ValueError), 1 when the run failed (RuntimeError).
    """
    cfg = parse_stage_args(schema, argv, prog=prog)
    try:
        if check is not None:
            check(cfg)
        with ray_session(cfg.ray):  # type: ignore[attr-defined]
            outputs = run(cfg)
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(outputs, indent=2, default=str))
    return 0
