"""Where label tasks run: in this process, one after the other (the default), or on a Dask
cluster, one task per frame (the machinery is :mod:`hybridff.cluster`).

:func:`run_tasks` yields a :class:`~hybridff.labels.tasks.FrameOutcome` per task as each
completes, whichever way they run; the serial path calls the same task function
(:func:`~hybridff.labels.tasks.compute_frame`) in-process and never imports Dask. A frame
that kills every worker computing it (the QM program crashed or ran out of memory) comes back
as a failed frame; the other faults are :mod:`hybridff.cluster`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from hybridff.cluster import (
    CONNECT_TIMEOUT_S,
    NO_WORKERS_TIMEOUT_S,
    dask_client,
    log_worker_counts,
)
from hybridff.cluster import run_tasks as _run_tasks
from hybridff.labels.tasks import FrameOutcome, FrameTask, compute_frame

__all__ = ["CONNECT_TIMEOUT_S", "NO_WORKERS_TIMEOUT_S", "dask_client", "log_worker_counts",
           "lost_frame", "run_tasks"]


def lost_frame(task: FrameTask, exc: BaseException) -> FrameOutcome:
    """The failed outcome of a frame that every worker computing it died on."""
    return FrameOutcome(task.index, error=(
        "every Dask worker that computed this frame died (the QM program crashed or ran out "
        f"of memory?): {exc}"), worker="(killed)")


def run_tasks(tasks: Sequence[FrameTask], scheduler: str | None = None,
              workers: int | None = None, client: Any = None,
              no_workers_timeout: float = NO_WORKERS_TIMEOUT_S) -> Iterator[FrameOutcome]:
    """Outcomes of ``tasks`` as they complete: in-process and in order without ``scheduler``,
    ``workers`` or ``client``; else on that Dask cluster, in completion order."""
    return _run_tasks(compute_frame, tasks, what="frame", ident=lambda t: t.index, lost=lost_frame,
                      scheduler=scheduler, workers=workers, client=client,
                      no_workers_timeout=no_workers_timeout)
