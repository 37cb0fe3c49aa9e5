"""Joining a Ray cluster, and Ray's failures turned into one line a user can act on.

``twin ... --ray`` starts a local Ray runtime on this machine's cores; ``--ray ADDRESS`` joins an
existing cluster (``host:port`` of its head node, ``ray://host:port`` for Ray Client, or ``auto``).
An address is checked with a plain TCP connection first, so an unreachable cluster is refused in
seconds rather than after Ray's own minute of retries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import TwinError

#: ``--ray`` without an address: a local runtime on this machine.
LOCAL = "local"
#: Seconds to wait for a TCP connection to a cluster's address.
CONNECT_TIMEOUT_S = 5.0
#: Test hook: a path whose existence makes the next encoder batch kill its worker process (the
#: file counts the deaths left, see ``maybe_die``). The test suite uses it to check Ray's retries.
#: A worker, a task or an actor call is retried this many times, then the job fails whole.
RETRIES = 3
KILL_ONCE_ENV = "TWIN_RAY_KILL_ONCE"


class RayMissing(TwinError):
    """The ``ray`` extra is not installed."""


@dataclass(frozen=True)
class Cluster:
    """The Ray runtime a job runs on: its CPUs and GPUs, and whether twin started it."""

    cpus: int
    gpus: int
    started_here: bool
    node_cpus: int = 1  #: CPUs of the smallest node: the threads of one encoder actor


def import_ray():  # noqa: ANN201 - the ray module
    """``ray``, or a one-line error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayMissing("--ray needs the ray extra: pip install 'twin-retrieval[ray]'") from None
    return ray


def connect(address: str | None = LOCAL) -> Cluster:
    """Join the Ray runtime at ``address`` (``local``/None: start one here; a runtime this process
    already joined is reused). Ray's own logging is kept to errors."""
    ray = import_ray()
    logging.getLogger("ray").setLevel(logging.ERROR)  # its notices are not the user's concern
    if not ray.is_initialized():
        options = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
        if address in (None, LOCAL):
            ray.init(include_dashboard=False, **options)
        else:
            check_reachable(address)
            try:
                ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise TwinError(f"--ray {address}: cannot join the Ray cluster ({_first_line(exc)})") from None
        started = address in (None, LOCAL)
    else:
        started = False
    _configure_data()
    resources = ray.cluster_resources()
    nodes = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    node_cpus = max(1, min((n for n in nodes if n > 0), default=1))
    return Cluster(int(resources.get("CPU", 1)), int(resources.get("GPU", 0)), started, node_cpus)


def disconnect(cluster: Cluster) -> None:
    """Stop the local runtime twin started (a cluster joined by address is left running)."""
    if cluster.started_here:
        import_ray().shutdown()


def check_reachable(address: str) -> None:
    """TwinError unless a TCP connection to ``address``'s host and port opens within the timeout."""
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise TwinError(f"--ray {address}: not an address; give HOST:PORT of the head node (e.g. 10.0.0.5:6379), "
                        "ray://HOST:PORT, or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise TwinError(f"--ray {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                        "start one with `ray start --head`, or leave out the address to run on this machine") from None


#: Ray Data's largest block. Its default (128 MiB) made one block of a 200,000-row file, so one
#: encoder actor did all the work while the others idled; 1 MiB is about 4,000 rows of text.
BLOCK_BYTES = 1 << 20


def _configure_data() -> None:
    """Ray Data keeps results in order (so a build equals a local one), cuts blocks small enough
    to share a file among every encoder, and draws no progress bars of its own: twin draws one."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.target_max_block_size = BLOCK_BYTES
    context.enable_progress_bars = False
    context.enable_operator_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its task failures reach the user as one line


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Ray's wrapped failures as the TwinError raised inside a task (a bad corpus row keeps its
    file:line:column), or as one line naming what failed."""
    try:
        yield
    except Exception as exc:
        cause = user_error(exc)
        if cause is not None:
            raise cause from None
        if type(exc).__module__.startswith("ray"):
            raise TwinError(f"the Ray job failed and nothing of it was kept ({_first_line(exc)}; Ray retries a "
                            f"lost worker's work {RETRIES} times)") from None
        raise


def user_error(exc: BaseException) -> TwinError | None:
    """The TwinError behind a Ray exception: a task error's original ``cause`` (Ray's wrapper is
    itself an instance of the cause's class, with the remote traceback as its message), or the
    first TwinError of the cause chain."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            exc = cause
            continue
        if isinstance(exc, TwinError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


def maybe_die() -> None:
    """The ``KILL_ONCE_ENV`` test hook: while its file exists, exit this worker at once, without
    cleanup. The file holds how many more deaths to cause (empty: one); the last one removes it."""
    marker = os.environ.get(KILL_ONCE_ENV)
    if not marker:
        return
    try:
        text = Path(marker).read_text().strip()
    except FileNotFoundError:
        return
    left = int(text) if text.isdigit() else 1
    if left > 1:
        Path(marker).write_text(str(left - 1))
    else:
        Path(marker).unlink(missing_ok=True)
    os._exit(1)
