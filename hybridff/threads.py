"""Thread counts of the libraries hybridff drives, changed only for the length of a block.

torch's intra-op thread count and the OpenMP/BLAS environment variables outlive a call:
a library that sets them and leaves them set changes other code in the same process. These
context managers set them for a block and give the previous value back at its end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

#: thread-count variables of the OpenMP / BLAS libraries that QM engines and torch load
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch on ``threads`` intra-op threads inside the block; the earlier setting after it.

    The setting is read and given back in the calling thread (with torch's OpenMP backend
    each Python thread has its own), so blocks nest and blocks in other threads do not
    interfere.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def environment_defaults(values: Mapping[str, str]) -> Iterator[None]:
    """Set the environment variables of ``values`` that are not set already (the user's own
    settings win) for the block; remove them again at its end."""
    added = [name for name in values if name not in os.environ]
    for name in added:
        os.environ[name] = str(values[name])
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
