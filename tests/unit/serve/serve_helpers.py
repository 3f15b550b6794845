"""Tiny exports and input files for the serve tests (nothing downloaded; a model builds in < 1 s)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from med3dinsight.config.ingest import IngestConfig
from med3dinsight.config.model import BackboneConfig, ModelConfig, PSATConfig
from med3dinsight.ingest.volume import preprocessing_record
from med3dinsight.models.export import save_encoder
from med3dinsight.models.med3dinsight import build_model

CROP = [32, 32, 32]


def ingest_config(target_spacing: list[float] | None = None) -> IngestConfig:
    cfg = IngestConfig(input="-")
    cfg.preprocess.target_spacing = [1.5, 1.5, 2.0] if target_spacing is None else target_spacing
    cfg.zarr.chunk = [16, 16, 16]
    return cfg


def model_config(psat: bool = True) -> ModelConfig:
    return ModelConfig(
        backbone=BackboneConfig(name="unet_small", img_size=list(CROP), feature_size=4, num_levels=3),
        psat=PSATConfig(num_queries=4, dim=16, num_layers=1, num_heads=2, ffn_dim=32, num_slice_bins=8, out_dim=12),
    )


def export_preprocessing(ingest: IngestConfig) -> dict:
    """The preprocessing record pretraining writes (train.pretrain.preprocessing_of): ingest + input + crop."""
    return {
        "ingest": preprocessing_record(ingest),
        "input": {"ct_window_hu": [-1000.0, 1000.0], "scale": "CT: clip to the window, then to [0, 1]"},
        "crop": {"size_zyx": CROP, "slice_position": "crop", "num_slice_bins": 8},
        "num_volumes": 1,
    }


def make_export(
    folder: Path, psat: bool = True, head: str | None = None, ingest: IngestConfig | None = None, seed: int = 0
) -> Path:
    """A pretraining export of a random tiny model; with `head`, a fine-tuned export (head_export format)."""
    torch.manual_seed(seed)
    model = build_model(model_config())
    preprocessing = export_preprocessing(ingest or ingest_config())
    if head is None:
        return save_encoder(model, folder, preprocessing=preprocessing, source_run="tests/serve", include_psat=psat)
    from med3dinsight.models.head_export import save_task_net
    from med3dinsight.models.heads import build_task_net

    cfg = model.backbone.cfg
    net = build_task_net(head, cfg, 3, model.backbone.encoder)
    preprocessing["finetune_input"] = {"ct_window_hu": [-1000.0, 1000.0], "crop_zyx": CROP}
    return save_task_net(net, head, cfg, folder, 3, ["background", "body", "bone"], preprocessing, {}, "tests/ft")


def ct_image(
    seed: int = 0, shape_zyx: tuple[int, int, int] = (20, 40, 36), direction: tuple | None = None
) -> sitk.Image:
    rng = np.random.default_rng(seed)
    hu = np.full(shape_zyx, -1000, np.int16)
    z, y, x = np.ogrid[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    c = [n / 2 for n in shape_zyx]
    body = ((z - c[0]) / (0.4 * shape_zyx[0])) ** 2 + ((y - c[1]) / (0.4 * shape_zyx[1])) ** 2 + (
        (x - c[2]) / (0.4 * shape_zyx[2])
    ) ** 2 < 1
    hu[body] = 40 + rng.integers(-30, 30, int(body.sum()))
    hu[body & (np.abs(x - c[2]) < 3)] = 700
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((1.1, 0.9, 2.5))
    image.SetOrigin((-20.0, 10.0, 5.0 + seed))
    if direction is not None:
        image.SetDirection(direction)
    return image


def write_ct(path: Path, seed: int = 0, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(ct_image(seed, **kw), str(path), useCompression=path.name.endswith(".gz"))
    return path


def dicom_zip(image: sitk.Image, folder: Path) -> bytes:
    """A .zip of `image` written as a DICOM series (members in a sub-folder, shuffled order)."""
    from med3dinsight.data.dicom_writer import write_dicom_series

    files = write_dicom_series(image, str(folder), "CT", seed=3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in reversed(files):
            archive.write(path, f"series/{Path(path).name}")
    return buffer.getvalue()


def nifti_with_nan(path: Path) -> Path:
    image = sitk.Cast(ct_image(), sitk.sitkFloat32)
    voxels = sitk.GetArrayFromImage(image)
    voxels[3, 4, 5] = np.nan
    out = sitk.GetImageFromArray(voxels)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))
    return path


def nifti_4d(path: Path) -> Path:
    frames = [ct_image(0), ct_image(0)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    return path


def truncated(path: Path, source: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def sheared_nifti(path: Path) -> Path:
    """A NIfTI whose sform has shear (non-orthonormal directions)."""
    import nibabel as nib

    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    affine[0, 1] = 0.5
    voxels = np.transpose(sitk.GetArrayFromImage(ct_image()), (2, 1, 0))
    image = nib.Nifti1Image(voxels, affine)
    image.set_sform(affine, code=1)
    image.set_qform(np.diag([1.0, 1.0, 2.0, 1.0]), code=1)
    nib.save(image, str(path))
    return path
