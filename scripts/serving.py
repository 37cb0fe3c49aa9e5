"""Start `twin serve` on 127.0.0.1 for the HTTP scripts (bench_http.py, soak.py)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, *options: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`twin serve --index INDEX OPTIONS` in a child process, once /ready answers; (process, base URL)."""
    port = free_port()
    command = [sys.executable, "-m", "retrieval.cli", "serve", "--index", str(index), "--port", str(port), *options]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            if httpx.get(f"{base}/ready").status_code == 200:
                return server, base
        except httpx.TransportError:
            pass
        if time.time() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("server did not become ready")
        time.sleep(0.2)


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
