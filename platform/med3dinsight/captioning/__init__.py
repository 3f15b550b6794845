"""The caption stage: tri-planar slices -> 2D-MLLM captions -> frozen 2D image and text embeddings."""
