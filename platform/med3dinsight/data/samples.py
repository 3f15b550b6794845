"""A small sample dataset in every supported input format, generated on the spot (nothing downloaded).

Layout written under `folder`:
    ct_0.nii.gz, ct_1.nii.gz   CT phantoms (ct_1 stored RAS-oriented, so ingest has to reorient it)
    mr_0.mha                   MR phantom (T1-like)
    ct_2.nrrd                  CT phantom
    dicom/ct_3/slice_*.dcm     CT phantom as a DICOM series (one file per slice)
    mni152.nii.gz              nilearn's MNI152 T1 template (ships with nilearn), when nilearn is installed
    labels/<name>_label.nii.gz the label map of every phantom (not of the template)
"""

from __future__ import annotations

import os

import SimpleITK as sitk

from med3dinsight.data.dicom_writer import write_dicom_series
from med3dinsight.data.phantoms import ct_phantom, mr_phantom

LABELS_FOLDER = "labels"
SAMPLE_ORGAN_SCALE = 1.7
"""Organ radii of the sample CT phantoms: at the demo's 1.5 mm the default organs are only 60-230 voxels,
and its 150 fine-tuning steps learned to predict none of them (validation Dice 0); at 1.7x (~1% of the
volume each) the same run reached a validation Dice of 0.25 against 0.01 untrained."""


def label_path(folder: str, name: str) -> str:
    """Where `write_sample_dataset` puts the label map of sample `name` (e.g. "ct_0")."""
    return os.path.join(folder, LABELS_FOLDER, f"{name}_label.nii.gz")


def write_sample_dataset(folder: str, seed: int = 0, size: int = 64, include_mni: bool = True) -> list[str]:
    """Write the sample dataset (see the module docstring) and return its image inputs.

    Args:
        folder: output folder (created; existing sample files are overwritten).
        seed: base seed; sample i uses seed + i. Equal seeds give identical voxels.
        size: voxels along the longest axis of each phantom (axes differ a little; about 16..256).
        include_mni: also write nilearn's MNI152 template (skipped if nilearn is not installed).

    Returns:
        Paths of the image inputs: four files, one DICOM series folder and, if written, the template.
    """
    if not 16 <= size <= 256:
        raise ValueError(f"size must be in 16..256 voxels, got {size}")
    os.makedirs(os.path.join(folder, LABELS_FOLDER), exist_ok=True)
    small = max(8, size * 3 // 4)
    inputs = []
    ct_0, labels_0 = ct_phantom((small, size, size), (0.8, 0.8, 1.5), seed, organ_scale=SAMPLE_ORGAN_SCALE)
    inputs.append(_write(ct_0, labels_0, folder, "ct_0", ".nii.gz"))
    ct_1, labels_1 = ct_phantom((size, small, size), (1.0, 1.2, 1.0), seed + 1, organ_scale=SAMPLE_ORGAN_SCALE)
    inputs.append(_write(_as_ras(ct_1), _as_ras(labels_1), folder, "ct_1", ".nii.gz"))
    mr_0, labels_mr = mr_phantom((small, size, small), (1.0, 1.0, 1.2), seed + 2)
    inputs.append(_write(mr_0, labels_mr, folder, "mr_0", ".mha"))
    ct_2, labels_2 = ct_phantom((small, small, size), (0.9, 0.9, 2.0), seed + 3, organ_scale=SAMPLE_ORGAN_SCALE)
    inputs.append(_write(ct_2, labels_2, folder, "ct_2", ".nrrd"))
    ct_3, labels_3 = ct_phantom((small, size, size), (0.7, 0.7, 2.5), seed + 4, organ_scale=SAMPLE_ORGAN_SCALE)
    series_folder = os.path.join(folder, "dicom", "ct_3")
    write_dicom_series(ct_3, series_folder, "CT", seed + 4)
    sitk.WriteImage(labels_3, label_path(folder, "ct_3"), useCompression=True)
    inputs.append(series_folder)
    if include_mni:
        mni = write_mni152(os.path.join(folder, "mni152.nii.gz"))
        if mni is not None:
            inputs.append(mni)
    return inputs


def write_mni152(path: str) -> str | None:
    """Copy nilearn's MNI152 T1 template (2 mm, ships inside nilearn) to `path`; None without nilearn."""
    try:
        from nilearn.datasets import load_mni152_template
    except ImportError:
        return None
    load_mni152_template(resolution=2).to_filename(path)
    return path


def _write(image: sitk.Image, labels: sitk.Image, folder: str, name: str, extension: str) -> str:
    path = os.path.join(folder, name + extension)
    sitk.WriteImage(image, path, useCompression=True)
    sitk.WriteImage(labels, label_path(folder, name), useCompression=True)
    return path


def _as_ras(image: sitk.Image) -> sitk.Image:
    """The same voxels at the same physical places, with x and y axes flipped (RAS-oriented storage)."""
    return sitk.DICOMOrient(image, "RAS")
