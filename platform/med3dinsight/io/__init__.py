"""Reading raw volumes, the Zarr store, the catalog."""
