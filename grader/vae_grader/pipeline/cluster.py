"""The Dask cluster the class is graded on: an embedded ``LocalCluster``, or an existing scheduler.

Default: a ``LocalCluster`` of worker *processes* with one thread each, one per usable core (at most
what memory allows, about :data:`MEMORY_PER_WORKER` each: nbgrader, a TensorFlow kernel and the
verdict process), so one student's runaway code takes down at most its own worker, and the
scheduler gives its students to the others. With ``--scheduler ADDRESS`` or ``$VAE_DASK_SCHEDULER``
the students go to an existing cluster (``dask scheduler`` + ``dask worker``, dask-jobqueue,
dask-kubernetes: README, "Grading a large class").

A task that was running on a worker that died is given to another worker; one that has been
running on :data:`ALLOWED_FAILURES` + 1 workers that all died is given up (``KilledWorker``) and its
student flagged for manual grading. The embedded cluster gets that setting here; an existing
scheduler has its own (``DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES``, default 3).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

SCHEDULER_ENV = "VAE_DASK_SCHEDULER"
WORKERS_ENV = "VAE_GRADING_WORKERS"
ALLOWED_FAILURES = 2
MEMORY_PER_WORKER = 3 * 2**30
CONNECT_TIMEOUT_S = 10


class PipelineError(RuntimeError):
    """A pipeline step failed for every student (not one student's submission): one line to show."""


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def grading_workers() -> int:
    """Worker processes of the embedded cluster: ``$VAE_GRADING_WORKERS``, else one per usable core,
    no more than memory holds at :data:`MEMORY_PER_WORKER` each, at least one."""
    value = os.environ.get(WORKERS_ENV, "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise PipelineError(
                f"{WORKERS_ENV} must be a whole number of at least 1, not {value!r}"
            )
        return int(value)
    by_memory = psutil.virtual_memory().total // MEMORY_PER_WORKER
    return max(1, min(usable_cores(), by_memory))


def scheduler_address(given: str | None = None) -> str | None:
    """The scheduler to use: the option, else the environment variable, else None (embedded)."""
    address = (given or os.environ.get(SCHEDULER_ENV, "")).strip()
    return address or None


@contextmanager
def grading_client(address: str | None = None, workers: int | None = None) -> Iterator:
    """A connected ``distributed.Client``: to ``address``, or to a new embedded LocalCluster.

    A scheduler that cannot be reached is one :class:`PipelineError` line naming the address.
    """
    import dask
    from distributed import Client, LocalCluster

    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise PipelineError(
                f"cannot reach the Dask scheduler at {address}: {str(error).splitlines()[0]}"
            ) from None
        with client:
            yield client
        return
    # worker-saturation 1.0: once a class has more students than twice the threads (Dask queues
    # only such large task groups), a worker holds only the task it runs, so its death is blamed
    # on that task alone; dask_runs grades any other suspect again alone.
    with dask.config.set(
        {
            "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
            "distributed.scheduler.worker-saturation": 1.0,
        }
    ):
        cluster = LocalCluster(
            n_workers=workers or grading_workers(),
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            memory_limit=0,  # the sandbox limits each kernel; the nanny must not kill a grader
            silence_logs=50,
        )
    with cluster, Client(cluster, set_as_default=False) as client:
        yield client
