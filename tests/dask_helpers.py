"""Helpers shared by the tests of work on Dask (test_batch, test_series, test_distributed)."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

#: the last lines of a script for :func:`assert_no_dask`: which Dask modules it loaded
_REPORT_DASK = (
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
    "print('loaded:', loaded)\n"
)


@contextlib.contextmanager
def local_cluster() -> Iterator[Any]:
    """A local Dask cluster of 2 worker processes (one thread each) on loopback."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0", silence_logs=logging.ERROR) as local:
        yield local


def assert_no_dask(code: str, cwd: Path) -> None:
    """Run ``code`` (which imports ``sys``) in a fresh interpreter in ``cwd``: it succeeds
    and loads neither ``dask`` nor ``distributed``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code + _REPORT_DASK], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
