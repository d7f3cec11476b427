"""Reading many files in parallel: shares of the file list read and validated by a local process pool or by
the workers of a Dask cluster (``dask.distributed``), merged in file order so the result never depends on
how the work was split.

Clean files are parsed by Arrow (threaded) and the rest record by record in Python, CPU-bound, so a pool
worker runs Arrow on one thread and the workers are processes. A share is a
contiguous run of the walked files (name order), sized so that every worker gets several shares and a slow
share does not leave the others idle.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Sequence

from workbench import config
from workbench.data.schema import MAX_FILE_BYTES, IngestError
from workbench.data.walk import SourceFile

if TYPE_CHECKING:
    from workbench.data.read import _Part

MIN_FILES_PER_WORKER = 400  # below this a worker's start-up (~0.3 s) costs more than it saves
SHARES_PER_WORKER = 4
FILES_PER_SHARE = 1000  # in one process: files parsed before their records are turned into columns and freed


def default_workers(n_files: int) -> int:
    """Processes used when ``workers`` is not given: one per available core, as long as each gets at least
    :data:`MIN_FILES_PER_WORKER` files (1 means: read in this process)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, n_files // MIN_FILES_PER_WORKER))


def shares(files: Sequence[SourceFile], n: int) -> list[list[SourceFile]]:
    """``files`` cut into ``n`` contiguous runs of near-equal length (none empty), in order."""
    n = max(1, min(n, len(files)))
    bounds = [round(i * len(files) / n) for i in range(n + 1)]
    return [list(files[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def work_shares(files: Sequence[SourceFile], workers: int) -> list[list[SourceFile]]:
    """The shares of ``files`` for ``workers`` readers: in one process, runs of :data:`FILES_PER_SHARE` (the
    records of one run are freed before the next); with several, at least :data:`SHARES_PER_WORKER` per worker
    and none longer than :data:`FILES_PER_SHARE`, so a slow share does not leave the others idle."""
    if workers <= 1:
        return [list(files[i:i + FILES_PER_SHARE]) for i in range(0, len(files), FILES_PER_SHARE)]
    return shares(files, max(workers * SHARES_PER_WORKER, -(-len(files) // FILES_PER_SHARE)))


def _context() -> multiprocessing.context.BaseContext:
    """How workers start. ``fork`` when this process runs no other Python thread (a script: fast, and the
    script is not re-imported, so it needs no ``if __name__ == "__main__"`` guard); ``forkserver`` otherwise
    (a Jupyter kernel, a threaded application: forking a threaded process is unsafe, so workers fork from a
    clean server process); ``spawn`` where neither exists."""
    methods = multiprocessing.get_all_start_methods()
    others = [t for t in threading.enumerate()  # tqdm's monitor only sleeps: it is not a reason to avoid fork
              if t is not threading.main_thread() and t.name != "tqdm_monitor"]
    if "fork" in methods and not others:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["workbench.data.read"])
        return ctx
    return multiprocessing.get_context("spawn")


def _worker_part(job: Sequence[SourceFile], max_file_bytes: int) -> "_Part":
    """:func:`read_part` in a pool or Dask worker (Arrow on one thread; text columns already travel as
    codes and distinct values, see :class:`workbench.data.columnar.Coded`)."""
    from workbench.data.read import read_part

    return read_part(job, max_file_bytes, False, threads=False)


def read_parts(files: Sequence[SourceFile], *, max_file_bytes: int = MAX_FILE_BYTES, workers: int | None = None,
               scheduler: str | None = None, progress: bool | None = None) -> list["_Part"]:
    """Read and validate ``files`` in shares; the shares in file order.

    Parameters
    ----------
    workers
        Local processes (default :func:`default_workers`); ``1`` reads in this process.
    scheduler
        A Dask scheduler address (``tcp://host:8786``) or a ``distributed.Client``; its workers read the
        shares (they must see the same paths). Overrides ``workers``.
    """
    from workbench.data.read import read_part

    if scheduler is not None:
        return _read_on_dask(files, scheduler, max_file_bytes)
    n = default_workers(len(files)) if workers is None else int(workers)
    if n < 1:
        raise IngestError(f"workers must be at least 1, got {workers}")
    jobs = work_shares(files, n)
    if n == 1:  # in this process, a share at a time
        return [read_part(job, max_file_bytes, False) for job in config.progress(jobs, "file shares", enabled=progress)]
    try:
        with ProcessPoolExecutor(max_workers=n, mp_context=_context()) as pool:
            futures = [pool.submit(_worker_part, job, max_file_bytes) for job in jobs]
            return [f.result() for f in config.progress(futures, "file shares", enabled=progress)]
    except BrokenProcessPool as exc:  # a worker killed (out of memory, a signal): nothing partial is returned
        raise IngestError(f"a reading process died ({exc}); retry with workers=1 to read in one process") from None


def _read_on_dask(files: Sequence[SourceFile], scheduler: object, max_file_bytes: int) -> list["_Part"]:
    """The shares read by a Dask cluster's workers, gathered in order."""
    from distributed import Client

    if isinstance(scheduler, Client):
        client = scheduler
    else:
        try:
            client = Client(str(scheduler), set_as_default=False, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise IngestError(f"cannot reach the Dask scheduler {str(scheduler)!r}: {exc}") from None
    try:
        n = max(1, sum(client.nthreads().values()))
        jobs = work_shares(files, max(2, n))  # a cluster of one thread still gets several shares
        futures = client.map(_worker_part, jobs, max_file_bytes=max_file_bytes, pure=False)
        return list(client.gather(futures))
    finally:
        if client is not scheduler:
            client.close()
