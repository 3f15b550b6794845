"""The ingest stage: raw volumes to OME-Zarr volumes, a catalog and a dataset fingerprint."""
