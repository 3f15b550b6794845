"""limit_threads pins SimpleITK, Blosc and zarr's codec pool to the CPUs a Ray task reserved."""

from __future__ import annotations

import numcodecs.blosc
import numpy as np
import SimpleITK as sitk
import zarr
import zarr.core.sync

from med3dinsight.ingest.pipeline import limit_threads


def test_every_pool_follows_the_task_cpus(tmp_path):
    before = (sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), numcodecs.blosc.get_nthreads(),
              zarr.config.get("threading.max_workers"))  # fmt: skip
    try:
        for n in (2, 1):  # a pool of another size made earlier is replaced, not kept
            limit_threads(n)
            array = zarr.create_array(tmp_path / f"a{n}", shape=(32, 32), chunks=(8, 8), dtype="i2")
            array[...] = np.arange(32 * 32, dtype=np.int16).reshape(32, 32)
            assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == n
            assert numcodecs.blosc.get_nthreads() == n
            assert zarr.core.sync._executor._max_workers == n
            np.testing.assert_array_equal(array[5], np.arange(160, 192, dtype=np.int16))
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before[0])
        numcodecs.blosc.set_nthreads(before[1])
        zarr.config.set({"threading.max_workers": before[2]})
        zarr.core.sync.cleanup_resources()
