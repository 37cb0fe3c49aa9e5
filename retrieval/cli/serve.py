"""`twin serve`: the HTTP service over one index."""

from __future__ import annotations

import errno
import socket
from pathlib import Path

import click

from index.folder import holder_info

from ..errors import TwinError
from .group import cli
from .options import backend_option, index_option, model_option, say, wait_option


@cli.command()
@index_option
@model_option
@backend_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--api-key", envvar="TWIN_API_KEY", default=None,
              help="Writes need 'Authorization: Bearer KEY' (also from env TWIN_API_KEY).")
@click.option("--read-only", is_flag=True, help="Refuse every write with 403, hold no writer lock (so a writer "
              "process may run beside it), and pick up that writer's commits every few seconds.")
@click.option("--no-batching", is_flag=True, help="Encode each search on its own (no micro-batching).")
@click.option("--max-wait-ms", type=click.FloatRange(0, 1000), default=2.0, show_default=True,
              help="How long a search may wait for others to share its encoder call.")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Allow this browser origin (repeatable; none by default).")
@click.option("--snapshot-every", type=click.FloatRange(1), default=30.0, show_default=True,
              help="Seconds between FAISS snapshots when writes happened (writes are durable at once).")
@click.option("--groups", "groups_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A `twin groups` output file whose groups the review page shows (they can also be "
                   "computed on the page).")
@wait_option
def serve(index_dir: Path, model: Path | None, backend: str | None, host: str, port: int, api_key: str | None,
          read_only: bool, no_batching: bool, max_wait_ms: float, cors_origins: tuple[str, ...],
          snapshot_every: float, groups_path: Path | None, wait_s: float) -> None:
    """Serve nearest-match lookups, upserts and deletes over HTTP (OpenAPI at /docs), and the
    review page at / (search, duplicate groups, verdicts, tau from the verdicts).

    The server is the index's one writer while it runs: other processes read it (query, info,
    dedup) but write through the server (POST /items, DELETE /items/ID)."""
    import uvicorn

    from ..api import Settings, create_app
    from ..api.server import server_config
    from ..retriever import Retriever
    from ..review import GroupBook

    groups = GroupBook.read(groups_path) if groups_path is not None else None
    sock = _bind(host, port)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}"
    try:
        retriever = Retriever.open(index_dir, model, read_only=read_only, holder=holder_info(url=url), wait_s=wait_s,
                                   backend=backend)
    except BaseException:
        sock.close()
        raise
    settings = Settings(api_key=api_key or None, read_only=read_only, batching=not no_batching,
                        max_wait_ms=max_wait_ms, cors_origins=list(cors_origins), snapshot_every_s=snapshot_every)
    config = server_config(create_app(retriever, settings, groups))
    say(f"serving {index_dir} ({len(retriever)} items{', read-only' if read_only else ''}) on {url} "
        f"(review page at {url}/, docs at /docs)")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        retriever.close()
        sock.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying why there is none."""
    try:
        family, kind, proto = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)[0][:3]
    except socket.gaierror as exc:
        raise TwinError(f"cannot serve on {host}: {exc.strerror}") from None
    # proto must say TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that do, and with
    # Nagle on every small answer waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise TwinError(f"port {port} on {host} is taken (another server?); choose another with --port") from None
        raise TwinError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock
