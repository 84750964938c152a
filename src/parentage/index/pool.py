"""Worker processes for indexing and identify: spawned (no inherited database connections or open files), each
with one BLAS thread (the work is many small products; two threads per core only contend)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

ONE_THREAD = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def process_pool(workers: int, initializer=None, initargs: tuple = ()):
    saved = {k: os.environ.get(k) for k in ONE_THREAD}
    os.environ.update({k: "1" for k in ONE_THREAD})  # read by each worker's numpy at its start
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
                                 initargs=initargs) as pool:
            yield pool
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
