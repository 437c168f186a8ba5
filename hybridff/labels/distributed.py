"""Where label tasks run: in this process, one after the other (the default), or on a Dask
cluster, one task per frame.

- :func:`run_tasks` yields a :class:`~hybridff.labels.tasks.FrameOutcome` per task as each
  completes, whichever way they run; the serial path calls the same task function
  (:func:`~hybridff.labels.tasks.compute_frame`) in-process and never imports Dask.
- ``workers=N`` starts a local Dask cluster of N worker processes (one thread each) on the
  loopback interface for the run; ``scheduler=ADDRESS`` sends the tasks to a running cluster
  (``dask scheduler`` + ``dask worker`` on any machines, or a dask-jobqueue cluster).

Faults: a worker that dies mid-task has its tasks rerun on another worker by the Dask
scheduler (a task that kills several workers, Dask's ``distributed.scheduler.allowed-failures``,
is given up and reported as a failed frame); a frame whose QM fails comes back as a failed outcome; when the cluster has had
no workers for ``no_workers_timeout`` seconds, or the scheduler cannot be reached, a
:class:`~hybridff.exceptions.ClusterError` stops the run (what was yielded so far is the
caller's to keep).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from hybridff.exceptions import ClusterError, OptionalDependencyError
from hybridff.labels.tasks import FrameOutcome, FrameTask, compute_frame

logger = logging.getLogger(__name__)

#: seconds a cluster may have no workers before the run stops
NO_WORKERS_TIMEOUT_S = 60.0
#: seconds to reach a scheduler given by address
CONNECT_TIMEOUT_S = 30.0
#: how often (s) the cluster's workers are checked while no task completes
POLL_S = 1.0
#: pause (s) between looks for completed tasks
WAIT_S = 0.005


def _dask() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise OptionalDependencyError(
            "running on a Dask cluster (--workers/--scheduler) needs Dask: "
            "pip install dask distributed") from exc
    return distributed


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A ``distributed.Client`` of the running scheduler at ``scheduler``, or of a local
    cluster of ``workers`` processes (one thread each, loopback only) started for the block."""
    distributed = _dask()
    with _quiet_dask():
        yield from _client(distributed, scheduler, workers)


@contextlib.contextmanager
def _quiet_dask() -> Iterator[None]:
    """Dask's own INFO messages (workers starting and closing) only in debug logging."""
    dask_logger = logging.getLogger("distributed")
    before = dask_logger.level
    if not logger.isEnabledFor(logging.DEBUG):
        dask_logger.setLevel(max(before, logging.WARNING))
    try:
        yield
    finally:
        dask_logger.setLevel(before)


def _client(distributed: Any, scheduler: str | None, workers: int | None) -> Iterator[Any]:
    if (scheduler is None) == (workers is None):
        raise ValueError("give exactly one of scheduler (an address) or workers (a count)")
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); start one with "
                "'dask scheduler' and workers with 'dask worker ADDRESS', or use --workers N "
                "for a cluster on this machine") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers is None or workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    cluster = distributed.LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=":0", silence_logs=logging.ERROR)
    try:
        client = distributed.Client(cluster)
        logger.info("local Dask cluster: %d worker processes at %s%s", workers,
                    cluster.scheduler_address,
                    f", dashboard {client.dashboard_link}"
                    if importlib.util.find_spec("bokeh") else "")
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def run_tasks(tasks: Sequence[FrameTask], scheduler: str | None = None,
              workers: int | None = None, client: Any = None,
              no_workers_timeout: float = NO_WORKERS_TIMEOUT_S) -> Iterator[FrameOutcome]:
    """Outcomes of ``tasks`` as they complete: in-process and in order without ``scheduler``,
    ``workers`` or ``client``; else on that Dask cluster, in completion order."""
    if client is None and scheduler is None and workers is None:
        for task in tasks:
            yield compute_frame(task)
        return
    if not tasks:
        return
    if client is not None:
        yield from _on_client(client, tasks, no_workers_timeout)
        return
    with dask_client(scheduler, workers) as own:
        yield from _on_client(own, tasks, no_workers_timeout)


def _on_client(client: Any, tasks: Sequence[FrameTask],
               no_workers_timeout: float) -> Iterator[FrameOutcome]:
    """Submit one task per frame and yield outcomes as they complete (see the module doc)."""
    distributed = _dask()
    token = uuid.uuid4().hex[:8]
    keys = [f"hybridff-qm-frame-{t.index}-{token}" for t in tasks]
    futures = client.map(compute_frame, list(tasks), key=keys)
    task_of = {f.key: t for f, t in zip(futures, tasks, strict=True)}
    pending = set(futures)
    # results are fetched as each task completes and handed out in batches
    arrived = distributed.as_completed(futures, with_results=True, raise_errors=False)
    idle_since: float | None = None
    checked = time.monotonic()
    try:
        while pending:
            batch = arrived.next_batch(block=False)
            if not batch:
                if time.monotonic() - checked >= POLL_S:
                    idle_since = _check_workers(client, idle_since, no_workers_timeout,
                                                len(pending))
                    checked = time.monotonic()
                time.sleep(WAIT_S)
                continue
            idle_since, checked = None, time.monotonic()
            for future, result in batch:
                pending.discard(future)
                status = future.status
                future.release()
                if status == "finished":
                    yield result
                    continue
                task = task_of[future.key]
                exc = result[1] if status == "error" and isinstance(result, tuple) else None
                if isinstance(exc, distributed.KilledWorker):
                    yield FrameOutcome(task.index, error=(
                        "every Dask worker that computed this frame died (the QM program "
                        f"crashed or ran out of memory?): {exc}"), worker="(killed)")
                elif exc is not None:
                    raise exc
                else:
                    raise ClusterError(f"frame {task.index}: its Dask task was {status} (the "
                                       "scheduler was lost, restarted or cancelled it); the "
                                       "frames received so far are kept: re-run the same "
                                       "command to compute the rest")
    finally:
        if pending:
            with contextlib.suppress(Exception):  # the scheduler may be gone already
                client.cancel(list(pending))


def _lost(client: Any, exc: BaseException) -> ClusterError:
    return ClusterError(f"lost the Dask scheduler {client.scheduler.address} ({exc}); the "
                        "frames received so far are kept: re-run the same command to compute "
                        "the rest")


def _check_workers(client: Any, idle_since: float | None, timeout: float,
                   n_pending: int) -> float | None:
    """The time since when the cluster has had no workers (``None``: it has some); raise a
    :class:`ClusterError` once that lasts ``timeout`` seconds."""
    try:
        n_workers = len(client.nthreads())
    except OSError as exc:
        raise _lost(client, exc) from None
    if n_workers:
        return None
    now = time.monotonic()
    if idle_since is None:
        logger.warning("the Dask cluster at %s has no workers; waiting up to %.0f s for one",
                       client.scheduler.address, timeout)
        return now
    if now - idle_since >= timeout:
        raise ClusterError(
            f"no Dask workers left at {client.scheduler.address} for {timeout:.0f} s, with "
            f"{n_pending} frame(s) still to compute; the frames received so far are kept: "
            "start workers ('dask worker ADDRESS') and re-run the same command to compute the "
            "rest")
    return idle_since


def log_worker_counts(outcomes: Iterable[FrameOutcome], what: str = "tasks") -> Counter:
    """Log how many ``what`` each worker ran (and how many failed); returns worker -> count."""
    counts: Counter = Counter()
    failed: Counter = Counter()
    for outcome in outcomes:
        counts[outcome.worker] += 1
        failed[outcome.worker] += not outcome.ok
    if counts:
        logger.info("%s per worker: %s", what, ", ".join(
            f"{w} {n}" + (f" ({failed[w]} failed)" if failed[w] else "")
            for w, n in sorted(counts.items())))
    return counts
