"""Synthetic sample data: CT/MR phantoms with label maps, and a sample dataset in every input format."""

from med3dinsight.data.phantoms import ct_phantom, mr_phantom
from med3dinsight.data.samples import label_path, write_sample_dataset

__all__ = ["ct_phantom", "label_path", "mr_phantom", "write_sample_dataset"]
