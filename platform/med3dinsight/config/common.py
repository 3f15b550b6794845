"""Config pieces shared by every stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RayConfig:
    """How a stage connects to Ray."""

    address: str | None = None
    """None: join the cluster in $RAY_ADDRESS (set by `ray job submit`), else start an embedded local Ray."""
    num_cpus: int | None = None
    """CPUs of an embedded local Ray (None: all of this machine's)."""
    object_store_memory_mb: int = 512
    """Object store of an embedded local Ray."""
    temp_dir: str | None = None
    """Private temp dir of an embedded local Ray (None: a fresh one under /tmp)."""
    include_dashboard: bool = False
    progress_bars: bool = True
    """Ray Data progress bars."""

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError(f"ray.num_cpus must be >= 1, got {self.num_cpus}")
        if self.object_store_memory_mb < 64:
            raise ValueError(f"ray.object_store_memory_mb must be >= 64, got {self.object_store_memory_mb}")
