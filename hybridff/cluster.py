"""Where independent tasks run: in this process, one after the other (the default), or on a
Dask cluster, one Dask task each. Used for QM labels (one task per frame,
:mod:`hybridff.labels.distributed`) and for many-molecule work (one task per molecule,
:mod:`hybridff.batch`).

- :func:`run_tasks` yields ``function(task)`` for each task as it completes, whichever way
  they run; the serial path calls the same function in-process and never imports Dask.
- ``workers=N`` starts a local Dask cluster of N worker processes (one thread each) on the
  loopback interface for the run; ``scheduler=ADDRESS`` sends the tasks to a running cluster
  (``dask scheduler`` + ``dask worker`` on any machines, or a dask-jobqueue cluster).
- :func:`thread_limits` caps the OpenMP/BLAS threads of a task, :func:`worker_name` says
  where it runs, :func:`log_worker_counts` logs how many tasks each worker ran and
  :func:`progress_bar` counts outcomes as they arrive.

Faults: a worker that dies mid-task has its tasks rerun on another worker by the Dask
scheduler; a task that kills several workers (Dask's
``distributed.scheduler.allowed-failures``) is given up and handed to the caller's ``lost``
function, which turns it into a failed outcome; when the cluster has had no workers for
``no_workers_timeout`` seconds, or the scheduler cannot be reached, a
:class:`~hybridff.exceptions.ClusterError` stops the run (what was yielded so far is the
caller's to keep). An exception the task function raises stops the run with that exception.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from hybridff.exceptions import ClusterError, OptionalDependencyError

logger = logging.getLogger(__name__)

#: seconds a cluster may have no workers before the run stops
NO_WORKERS_TIMEOUT_S = 60.0
#: seconds to reach a scheduler given by address
CONNECT_TIMEOUT_S = 30.0
#: how often (s) the cluster's workers are checked while no task completes
POLL_S = 1.0
#: pause (s) between looks for completed tasks
WAIT_S = 0.005
#: the worker name of tasks computed in the calling process
IN_PROCESS = "in-process"

T = TypeVar("T")
R = TypeVar("R")


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


def run_tasks(function: Callable[[T], R], tasks: Sequence[T], *, what: str = "task",
              ident: Callable[[T], Any] = id,
              lost: Callable[[T, BaseException], R] | None = None,
              scheduler: str | None = None, workers: int | None = None, client: Any = None,
              no_workers_timeout: float = NO_WORKERS_TIMEOUT_S) -> Iterator[R]:
    """``function(task)`` of each of ``tasks`` as it completes: in-process and in order
    without ``scheduler``, ``workers`` or ``client``; else on that Dask cluster, in
    completion order.

    ``what`` names a task in keys and messages ("frame", "molecule"); ``ident(task)`` is its
    number in them; ``lost(task, exc)`` is the outcome of a task that every worker computing
    it died on (``None``: the run stops with a :class:`ClusterError`).
    """
    if client is None and scheduler is None and workers is None:
        for task in tasks:
            yield function(task)
        return
    if not tasks:
        return
    run = _Run(function, what, ident, lost, no_workers_timeout)
    if client is not None:
        yield from run.on(client, tasks)
        return
    with dask_client(scheduler, workers) as own:
        yield from run.on(own, tasks)


class _Run:
    """One submission of tasks to a Dask client (see :func:`run_tasks`)."""

    def __init__(self, function: Callable[[Any], Any], what: str, ident: Callable[[Any], Any],
                 lost: Callable[[Any, BaseException], Any] | None, timeout: float) -> None:
        self.function, self.what, self.ident, self.lost = function, what, ident, lost
        self.timeout = timeout

    def on(self, client: Any, tasks: Sequence[Any]) -> Iterator[Any]:
        """Submit one Dask task per task and yield outcomes as they complete."""
        distributed = _dask()
        token = uuid.uuid4().hex[:8]
        keys = [f"hybridff-{self.what}-{self.ident(t)}-{token}" for t in tasks]
        futures = client.map(self.function, list(tasks), key=keys)
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
                        idle_since = self._check_workers(client, idle_since, len(pending))
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
                    if isinstance(exc, distributed.KilledWorker) and self.lost is not None:
                        yield self.lost(task, exc)
                    elif exc is not None:
                        raise exc
                    else:
                        raise ClusterError(
                            f"{self.what} {self.ident(task)}: its Dask task was {status} (the "
                            "scheduler was lost, restarted or cancelled it); "
                            f"{self._kept()}")
        finally:
            if pending:
                with contextlib.suppress(Exception):  # the scheduler may be gone already
                    client.cancel(list(pending))

    def _kept(self) -> str:
        return (f"the {self.what}s received so far are kept: re-run the same command to "
                "compute the rest")

    def _check_workers(self, client: Any, idle_since: float | None,
                       n_pending: int) -> float | None:
        """The time since when the cluster has had no workers (``None``: it has some); raise
        a :class:`ClusterError` once that lasts ``timeout`` seconds."""
        try:
            n_workers = len(client.nthreads())
        except OSError as exc:
            raise ClusterError(f"lost the Dask scheduler {client.scheduler.address} ({exc}); "
                               f"{self._kept()}") from None
        if n_workers:
            return None
        now = time.monotonic()
        if idle_since is None:
            logger.warning("the Dask cluster at %s has no workers; waiting up to %.0f s for one",
                           client.scheduler.address, self.timeout)
            return now
        if now - idle_since >= self.timeout:
            raise ClusterError(
                f"no Dask workers left at {client.scheduler.address} for {self.timeout:.0f} s, "
                f"with {n_pending} {self.what}(s) still to compute; the {self.what}s received "
                "so far are kept: start workers ('dask worker ADDRESS') and re-run the same "
                "command to compute the rest")
        return idle_since


@contextlib.contextmanager
def thread_limits(threads: int | None) -> Iterator[None]:
    """Limit the OpenMP and BLAS thread pools loaded in this process (tblite, pyscf, numpy,
    torch) to ``threads`` inside the block, in the calling thread (a Dask worker's task
    thread)."""
    if not threads:
        yield
        return
    from threadpoolctl import threadpool_limits

    pyscf_lib = sys.modules.get("pyscf.lib")
    before = pyscf_lib.num_threads() if pyscf_lib is not None else None
    with threadpool_limits(limits=int(threads)):
        if pyscf_lib is not None:
            pyscf_lib.num_threads(int(threads))
        try:
            yield
        finally:
            if pyscf_lib is not None and before is not None:
                pyscf_lib.num_threads(before)


def worker_name() -> str:
    """The address of the Dask worker running this code, else :data:`IN_PROCESS` (never
    imports Dask: only a process that already runs it can be a worker)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return IN_PROCESS
    try:
        return str(distributed.get_worker().address)
    except ValueError:  # Dask loaded, but this is not a worker
        return IN_PROCESS


def log_worker_counts(outcomes: Iterable[Any], what: str = "tasks") -> Counter:
    """Log how many ``what`` each worker ran (and how many failed); returns worker -> count.

    Each outcome has ``worker`` (its worker's name) and ``ok`` (False when it failed)."""
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


def ticking(outcomes: Iterable[R], bar: Any) -> Iterator[R]:
    """Each of ``outcomes``, ticking ``bar`` (a :func:`progress_bar`, or ``None``) once the
    caller has handled it; the bar is closed at the end, on an error too."""
    try:
        for outcome in outcomes:
            yield outcome
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()


def progress_bar(total: int, initial: int, desc: str, unit: str, enabled: bool = True) -> Any:
    """A tqdm bar over ``total`` outcomes, ``initial`` of them done before the run (``None``
    when disabled or tqdm is missing)."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit=unit)
