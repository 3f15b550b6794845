"""The encoder (and an optional fine-tuned head) in one process: model lookup, batched embedding, heads.

Plain Python with no Ray in it: the Serve deployment wraps it, the benchmark and tests call it directly.
Shape legend: W windows, B batch, E embedding width, K classes, D/H/W crop voxels, Z/Y/X volume voxels.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from med3dinsight.config.serve import PLANES, ServeConfig
from med3dinsight.io.store import Store
from med3dinsight.models.export import RECORD, WEIGHTS, load_encoder
from med3dinsight.serving.preprocessing import PreparedVolume, RequestPreprocessor
from med3dinsight.serving.windows import stitch_logits

HEAD_WEIGHTS, HEAD_RECORD = "head.safetensors", "head.json"
"""The files `models.head_export.save_task_net` adds to an encoder export (imported lazily: heads are optional)."""
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(slots=True)
class EmbedItem:
    """One request's encoder inputs: its windows and, for PSAT exports, the slice to embed."""

    windows_W1DHW: np.ndarray
    plane: int = 0
    slice_position: float = 0.5


def locate_model(model: str, store: Store) -> str:
    """Where the export of `model` is: a local directory path, or a name under the store's models/.

    Raises:
        ValueError: when neither holds an export, naming both places looked at.
    """
    path = Path(model).expanduser()
    if (path / RECORD).is_file():
        return str(path.resolve())
    if not MODEL_NAME.match(model):
        raise ValueError(f"model {model!r}: no {RECORD} in that directory, and it is not a valid model name")
    remote = store.path("models", model)
    if not store.exists(f"{remote}/{RECORD}"):
        raise ValueError(f"model {model!r}: no export at {path.resolve()} nor at {remote}")
    return remote


def resolve_model_dir(model: str, store: Store, cache_dir: str | None = None) -> Path:
    """The local export directory of `model` (see `locate_model`); a remote store's copy goes to `cache_dir`."""
    location = locate_model(model, store)
    if store.is_local or Path(location).is_dir():
        return Path(location)
    local = Path(cache_dir or tempfile.mkdtemp(prefix="m3d-model-")) / model
    local.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, RECORD, HEAD_WEIGHTS, HEAD_RECORD):
        if store.exists(f"{location}/{name}"):
            store.fs.get_file(f"{location}/{name}", str(local / name))
    return local


class EncoderRunner:
    """Loads an export and answers embed / segment / classify on prepared volumes.

    Args:
        export_dir: a directory written by `save_encoder` (or by `models.head_export.save_task_net`, with a head).
        cfg: the serve config (crop policy, limits, defaults, device).
        name: the model name reported to clients (default: the directory name).
    """

    def __init__(self, export_dir: str | Path, cfg: ServeConfig, name: str | None = None) -> None:
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        self.export_dir = Path(export_dir)
        self.encoder = load_encoder(self.export_dir, self.device)
        self.record = self.encoder.record
        self.task_net, self.head_record = None, None
        if (self.export_dir / HEAD_RECORD).is_file():  # a fine-tuned export (models.head_export)
            from med3dinsight.models.head_export import load_task_net

            self.task_net, self.head_record = load_task_net(self.export_dir, str(self.device))
            self.encoder.encoder = self.task_net.encoder  # the same weights: keep one copy
        self.preprocessor = RequestPreprocessor(
            self.record, cfg.crop, cfg.limits.memory_budget_mb, cfg.limits.max_zip_files
        )
        self.crop_zyx = tuple(self.preprocessor.policy["crop_size"])
        self.max_windows_per_call = max(cfg.batching.max_batch_size, cfg.crop.max_windows)
        self.default_plane = PLANES.index(cfg.default_plane)
        self.default_slice_position = cfg.default_slice_position
        self.name = name or self.export_dir.name
        digest = hashlib.sha256((self.export_dir / WEIGHTS).read_bytes()).hexdigest()
        self.version = str(self.record.get("version") or digest[:12])
        self._lock = threading.Lock()  # one forward at a time: parallel forwards only fight over the cores

    @property
    def embedding_dim(self) -> int:
        return self.encoder.embedding_dim

    @property
    def class_names(self) -> list[str]:
        """Names of the head's classes (their indices when the export has none)."""
        assert self.head_record is not None
        return [str(n) for n in self.head_record.get("class_names") or range(int(self.head_record["num_classes"]))]

    @property
    def tasks(self) -> list[str]:
        return ["embed"] + ([self.head_record["task"]] if self.head_record else [])

    def info(self) -> dict[str, Any]:
        """What is loaded (GET /v1/models)."""
        return {
            "name": self.name, "version": self.version, "architecture": self.record["backbone"]["name"],
            "backbone": self.record["backbone"], "psat": self.record["psat"], "embedding": self.record["embedding"],
            "embedding_dim": self.embedding_dim, "preprocessing": self.record["preprocessing"],
            "model_input": self.preprocessor.policy, "source_run": self.record.get("source_run"),
            "tasks": self.tasks, "head": self.head_record, "device": str(self.device),
        }  # fmt: skip

    def item(
        self, prepared: PreparedVolume, plane: str | None = None, slice_position: float | None = None
    ) -> EmbedItem:
        """The encoder work of one prepared request (defaults from config for the PSAT slice)."""
        plane_id = self.default_plane if plane is None else PLANES.index(plane)
        position = self.default_slice_position if slice_position is None else float(slice_position)
        return EmbedItem(prepared.windows_W1DHW, plane_id, position)

    @torch.no_grad()
    def embed_batch(self, items: list[EmbedItem]) -> list[np.ndarray]:
        """Embeddings (E,) of several requests in as few encoder calls as possible.

        All windows of all items are concatenated and run in chunks of `max_windows_per_call`; an item's
        embedding is the mean over its windows.
        """
        counts = [len(item.windows_W1DHW) for item in items]
        x_W1DHW = np.concatenate([item.windows_W1DHW for item in items])
        planes = np.repeat([item.plane for item in items], counts)
        positions = np.repeat([item.slice_position for item in items], counts)
        outputs = []
        with self._lock:
            for lo in range(0, len(x_W1DHW), self.max_windows_per_call):
                hi = lo + self.max_windows_per_call
                x = torch.from_numpy(np.ascontiguousarray(x_W1DHW[lo:hi])).to(self.device)
                plane_B = torch.as_tensor(planes[lo:hi], dtype=torch.long, device=self.device)
                pos_B = torch.as_tensor(positions[lo:hi], dtype=torch.float32, device=self.device)
                outputs.append(self.encoder.embed(x, plane_B, pos_B).float().cpu())
        emb_WE = torch.cat(outputs).numpy()
        bounds = np.cumsum([0, *counts])
        return [emb_WE[a:b].mean(0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    @torch.no_grad()
    def head_logits(self, prepared: PreparedVolume) -> torch.Tensor:
        """Task-network logits of every window (W, K) or (W, K, D, H, W)."""
        assert self.task_net is not None
        outputs = []
        with self._lock:
            for lo in range(0, len(prepared.windows_W1DHW), self.max_windows_per_call):
                x = torch.from_numpy(prepared.windows_W1DHW[lo : lo + self.max_windows_per_call]).to(self.device)
                outputs.append(self.task_net(x).float().cpu())
        return torch.cat(outputs)

    def classify(self, prepared: PreparedVolume) -> dict[str, float]:
        """Class probabilities (mean of the windows' softmax), by class name."""
        probs = torch.softmax(self.head_logits(prepared), dim=1).mean(0)
        return dict(zip(self.class_names, probs.tolist(), strict=True))

    def segment(self, prepared: PreparedVolume) -> tuple[sitk.Image, dict[str, int]]:
        """Label map in the input's native geometry (nearest-neighbour back from the preprocessed grid).

        Returns:
            The label image (uint8, or uint16 beyond 255 classes) and its voxel count per class name.
        """
        logits = stitch_logits(self.head_logits(prepared).numpy(), prepared.starts_zyx, prepared.shape_zyx)
        labels = logits.argmax(0)
        labels = labels.astype(np.uint8 if labels.max() < 256 else np.uint16)
        image = sitk.GetImageFromArray(labels)
        geometry = prepared.geometry
        image.SetSpacing(geometry["spacing"])
        image.SetOrigin(geometry["origin"])
        image.SetDirection(geometry["direction"])
        native = prepared.native_geometry
        reference = sitk.Image([int(n) for n in native["shape_zyx"][::-1]], image.GetPixelID())
        reference.SetSpacing(native["spacing"])
        reference.SetOrigin(native["origin"])
        reference.SetDirection(native["direction"])
        out = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, image.GetPixelID())
        counts = np.bincount(sitk.GetArrayViewFromImage(out).ravel(), minlength=len(self.class_names))
        return out, {name: int(n) for name, n in zip(self.class_names, counts, strict=False)}


def nifti_bytes(image: sitk.Image) -> bytes:
    """A SimpleITK image as .nii.gz bytes."""
    with tempfile.TemporaryDirectory(prefix="m3d-seg-") as tmp:
        path = os.path.join(tmp, "labels.nii.gz")
        sitk.WriteImage(image, path, useCompression=True)
        with open(path, "rb") as f:
            return f.read()
