"""Where the protocol's jobs run: joblib's loky processes here, or a Dask or Ray cluster.

Every backend is an existing engine reached through joblib (``joblib.parallel_config``); this module only
connects to it. Jobs are cut and seeded independently of the backend and the number of workers
(``protocol.chunks``), so every backend gives the same numbers. Results come back to this process,
which alone writes the run store: a cluster worker never touches ``--out``.

Workers of a cluster must be able to import ``rl2bench`` (and any ``module:Class`` algorithm named on
the command line), e.g. by installing this package in the workers' environment.

loky's workers end with this process, however it ends (``processes.follow_parent``, their initializer; with
joblib < 1.5, which has none, at their first job), and loky's resource trackers follow them out (their pipe
closes once every worker is gone).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from joblib import parallel_config

from rl2bench.errors import UserError
from rl2bench.processes import follow_parent

BACKENDS = ("loky", "dask", "ray")
INSTALL = {"dask": "python -m pip install 'rl2bench[dask]'  (dask.distributed)",
           "ray": "python -m pip install 'rl2bench[ray]'  (ray)"}


def check_backend(name: str, address: str | None) -> None:
    """Fail early, in one line, for an unknown backend, a missing engine or an address loky cannot use."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "loky" and address:
        raise UserError("--cluster needs --backend dask or ray (loky runs on this machine)")
    module = {"dask": "distributed", "ray": "ray"}.get(name)
    if module is not None:
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"--backend {name} needs {module}, which is not installed: {INSTALL[name]}") from None


def results_as(name: str) -> str:
    """joblib's ``return_as`` for the backend: results as they finish where the backend can; Ray's
    joblib backend returns whole lists only, so the protocol submits its jobs in waves."""
    return "list" if name == "ray" else "generator_unordered"


@contextlib.contextmanager
def execution_backend(name: str, address: str | None, n_jobs: int) -> Iterator[int]:
    """Make ``name`` joblib's backend for the duration; yields the ``n_jobs`` to give ``Parallel``.

    dask: connects to the scheduler at ``address`` (``tcp://host:8786``), or starts a local cluster of
    ``n_jobs`` single-threaded worker processes when there is none. ray: ``ray.init(address)``
    (``auto`` joins a running cluster), or a local one. Cluster backends use every worker (-1).
    """
    check_backend(name, address)
    if name == "loky":
        try:  # each worker follows this process out, however it ends
            config = parallel_config(backend="loky", initializer=follow_parent, initargs=(os.getpid(),))
        except TypeError:  # joblib < 1.5: no initializer; the worker's first job sets it (protocol._execute)
            config = parallel_config(backend="loky")
        with config:
            yield n_jobs
        return
    if name == "dask":
        from distributed import Client, LocalCluster

        with contextlib.ExitStack() as stack:
            try:
                # joblib's dask backend uses the client made current here
                if address:
                    stack.enter_context(Client(address, timeout="20s"))
                else:
                    cluster = stack.enter_context(LocalCluster(n_workers=n_jobs, threads_per_worker=1,
                                                               processes=True, dashboard_address=None))
                    stack.enter_context(Client(cluster))
            except OSError as err:
                raise UserError(f"cannot reach the Dask scheduler at {address}: {err}") from None
            with parallel_config(backend="dask", wait_for_workers_timeout=60):
                yield -1
        return
    import ray
    from ray.util.joblib import register_ray

    try:
        ray.init(address=address, num_cpus=None if address else n_jobs, include_dashboard=False,
                 ignore_reinit_error=True, log_to_driver=False)
    except (ConnectionError, RuntimeError) as err:
        raise UserError(f"cannot start or reach the Ray cluster {address or '(local)'}: {err}") from None
    register_ray()
    try:
        with parallel_config(backend="ray"):
            yield -1
    finally:
        ray.shutdown()
