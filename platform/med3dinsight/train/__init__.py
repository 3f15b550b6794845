"""Training on Ray Train: partial-OT pretraining, segmentation/classification fine-tuning (see jobs/)."""
