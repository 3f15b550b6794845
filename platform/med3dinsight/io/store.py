"""The store root (local path or fsspec URL) and the layout under it (../shared/DESIGN.md section 3).

A `Store` holds only its root and storage options, so it pickles cheaply across Ray tasks; the fsspec
filesystem is built lazily in each process.
"""

from __future__ import annotations

import os
import uuid
from functools import cached_property
from typing import Any

import fsspec
import zarr.storage


class Store:
    """A store root and the paths of the stage outputs under it.

    Args:
        root: a local path (relative paths are made absolute) or an fsspec URL such as s3://bucket/prefix.
        options: fsspec storage options (e.g. {"endpoint_url": ...}) for remote roots.
    """

    def __init__(self, root: str, options: dict[str, Any] | None = None) -> None:
        if not root:
            raise ValueError("store root is empty")
        self.protocol, _ = fsspec.core.split_protocol(root)
        self.is_local = self.protocol in (None, "file")
        self.root = os.path.abspath(root.removeprefix("file://")) if self.is_local else root.rstrip("/")
        self.options = dict(options or {})

    def __reduce__(self) -> tuple[Any, ...]:
        return (Store, (self.root, self.options))

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    @cached_property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The fsspec filesystem of the root."""
        if self.is_local:
            return fsspec.filesystem("file", auto_mkdir=True)
        return fsspec.filesystem(self.protocol, **self.options)

    def path(self, *parts: str) -> str:
        """Join `parts` under the root with '/' (valid for local paths and URLs alike)."""
        return "/".join([self.root, *parts])

    def volume_path(self, volume_id: str) -> str:
        return self.path("volumes", f"{volume_id}.ome.zarr")

    @property
    def catalog_path(self) -> str:
        return self.path("catalog", "volumes.parquet")

    @property
    def fingerprint_path(self) -> str:
        return self.path("catalog", "fingerprint.json")

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def zarr_store(self, path: str, read_only: bool = False) -> zarr.storage.StoreLike:
        """A zarr v3 store object for `path` (a path under this root)."""
        if self.is_local:
            return zarr.storage.LocalStore(path, read_only=read_only)
        return zarr.storage.FsspecStore.from_url(path, storage_options=self.options, read_only=read_only)


def atomic_write(store: Store, path: str, data: bytes) -> None:
    """Write `data` at `path` so readers never see half a file.

    Local: write aside, then rename. Object stores: a single PUT is already all-or-nothing.
    """
    if not store.is_local:
        store.fs.pipe_file(path, data)
        return
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    store.fs.pipe_file(tmp, data)
    store.fs.mv(tmp, path)
