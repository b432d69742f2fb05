"""Where per-patient tasks run: this machine's processes, or a Ray cluster (``--executor ray``).

:func:`map_tasks` calls one module-level function on a list of argument tuples and yields the
results as they complete. The function is the same under every executor, so the artifacts a
task writes are the same bytes wherever it ran (each task writes its own files atomically,
:mod:`ctsurv._util`, and depends only on its arguments); the caller assembles the results.

* ``"local"`` (the default): in this process when ``workers <= 1`` or there is one task, else a
  ``spawn`` process pool of ``workers`` processes.
* ``"ray"``: one Ray task per item (``num_cpus=1`` each unless told more; ``num_gpus`` where a
  task runs on a GPU). With ``address`` (``ray://host:10001``,
  ``host:6379`` or ``"auto"``) it joins that cluster, whose nodes must see the same file paths
  (a shared file system) and have ctsurv installed; without it, it starts a local Ray instance
  with ``workers`` CPUs and shuts it down afterwards. Ray is an optional extra
  (``pip install 'ctsurv[ray]'``); asking for it without Ray installed is a clear error.

A driver that dies loses only the tasks in flight: every finished task has written its
artifacts, and the next run reuses them (the callers' resumability).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ctsurv.exceptions import CtsurvError

__all__ = ["EXECUTORS", "map_tasks", "check_executor"]

#: the executors :func:`map_tasks` knows
EXECUTORS = ("local", "ray")


def check_executor(executor: str) -> None:
    """Refuse an unknown executor, and Ray when it is not installed, before any work starts."""
    if executor not in EXECUTORS:
        raise CtsurvError(f"unknown executor {executor!r}; expected one of {EXECUTORS}")
    if executor == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as exc:
            raise CtsurvError("executor 'ray' needs Ray, an optional extra: pip install 'ctsurv[ray]'") from exc


def _one_thread_each() -> None:
    # per-patient work is numpy/scipy: one thread per worker process, the workers in parallel
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def map_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], *, executor: str = "local", workers: int = 2,
              address: str | None = None, initializer: Callable[[], None] | None = _one_thread_each,
              cpus_per_task: int = 1, gpus_per_task: float = 0) -> Iterator[Any]:
    """Yield ``fn(*args)`` for every ``args`` of ``tasks``, in completion order.

    ``fn`` must be importable by name (a module-level function) for the process pool and Ray.
    ``cpus_per_task`` is what Ray reserves per task (a task that trains with 2 threads asks 2);
    the local pool runs ``workers`` tasks at a time whatever it is. ``gpus_per_task`` (Ray only)
    places each task on a node with that many free GPUs; a cluster with fewer GPUs than one task
    needs is refused before any task is submitted (Ray would wait for them forever).
    An exception raised by a task is raised here, with the task's own traceback chained.
    """
    check_executor(executor)
    tasks = list(tasks)
    if not tasks:
        return
    if executor == "ray":
        yield from _ray_map(fn, tasks, workers, address, initializer, cpus_per_task, gpus_per_task)
    elif workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                                 initializer=initializer) as pool:
            for fut in as_completed([pool.submit(fn, *args) for args in tasks]):
                yield fut.result()
    else:
        for args in tasks:
            yield fn(*args)


def _ray_task(fn, initializer, args):
    if initializer is not None:
        initializer()
    return fn(*args)


def _host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    try:
        return socket.gethostbyname(host), port
    except OSError:
        return host, port


def _check_attached_to(ray, address: str) -> None:
    """A process already attached to Ray runs its tasks there: refuse when ``address``
    (``host:port``) names another cluster instead of silently running on the wrong one.
    ``"auto"`` and ``ray://`` addresses cannot be compared and are trusted."""
    if address == "auto" or "://" in address or ":" not in address:
        return
    try:
        current = ray.get_runtime_context().gcs_address
    except Exception:  # noqa: BLE001 - client mode and older Rays: nothing to compare
        return
    if current and _host_port(current) != _host_port(address):
        raise CtsurvError(f"this process is already attached to the Ray cluster at {current}, not to "
                          f"{address}; call ray.shutdown() first, or leave the address out to use "
                          "the attached cluster")


def _ray_map(fn, tasks, workers: int, address: str | None, initializer, cpus_per_task: int = 1,
             gpus_per_task: float = 0) -> Iterator[Any]:
    import ray

    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": max(1, int(workers), int(cpus_per_task))}
        ray.init(include_dashboard=False, log_to_driver=False, ignore_reinit_error=True, **kw)
    elif address:
        _check_attached_to(ray, address)
    try:
        if gpus_per_task > 0:
            have = float(ray.cluster_resources().get("GPU", 0))
            if have < gpus_per_task:
                where = f"the Ray cluster at {address}" if address else "the local Ray instance"
                raise CtsurvError(f"each task needs {gpus_per_task:g} GPU and {where} has {have:g}; "
                                  "start Ray on GPU nodes, or run these tasks on the CPU")
        remote = ray.remote(num_cpus=max(1, int(cpus_per_task)), num_gpus=gpus_per_task,
                            max_retries=0)(_ray_task)
        pending = [remote.remote(fn, initializer, args) for args in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayTaskError as exc:  # the task's own exception, unwrapped
                cause = exc.as_instanceof_cause()
                raise cause from exc
    finally:
        if started:
            ray.shutdown()
