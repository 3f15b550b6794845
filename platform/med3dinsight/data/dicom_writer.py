"""Write a 3D SimpleITK image as a DICOM series (one file per slice) with pydicom, for sample data.

Each slice carries the tags readers rely on: ImagePositionPatient, ImageOrientationPatient,
PixelSpacing, SliceThickness, InstanceNumber, series/study/frame-of-reference UIDs, Modality.
UIDs derive from `seed`, so a given (image, seed) always yields identical files.
"""

from __future__ import annotations

import os

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SOP_CLASS = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4"}


def write_dicom_series(image: sitk.Image, folder: str, modality: str = "CT", seed: int = 0) -> list[str]:
    """Write `image` as `folder/slice_0000.dcm`, ... (one axial slice per file, explicit VR little endian).

    Args:
        image: 3D scalar image with integer voxels in int16 range (HU for CT); any direction.
        folder: created if missing.
        modality: "CT" or "MR" (the SOP class and Modality tag).
        seed: UID entropy.

    Returns:
        The written file paths, in slice order.
    """
    if modality not in SOP_CLASS:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASS)}, got {modality!r}")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"image must be scalar 3D, got {image.GetDimension()}D {image.GetPixelIDTypeAsString()}")
    voxels = sitk.GetArrayFromImage(image)
    if voxels.min() < np.iinfo(np.int16).min or voxels.max() > np.iinfo(np.int16).max:
        raise ValueError(f"voxels must fit int16, got range [{voxels.min()}, {voxels.max()}]")
    voxels = voxels.astype(np.int16)
    os.makedirs(folder, exist_ok=True)
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    study, series, frame = (generate_uid(entropy_srcs=[str(seed), modality, part]) for part in
                            ("study", "series", "frame"))  # fmt: skip
    paths = []
    for k in range(voxels.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS[modality]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=[str(seed), modality, "instance", str(k)]
        )
        ds.SOPClassUID = SOP_CLASS[modality]
        ds.Modality = modality
        ds.PatientName, ds.PatientID = "Phantom^Synthetic", f"PHANTOM{seed}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (y), column spacing (x)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = voxels.shape[1], voxels.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = "0", "1"
        ds.PixelData = voxels[k].tobytes()
        path = os.path.join(folder, f"slice_{k:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
