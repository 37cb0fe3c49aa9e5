"""Small things a user hit on the command line: help that tells the truth, a busy port, pipes
(closed early, or fed a line at a time), output formats, progress in a log, bounded shapes."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess

from click.testing import CliRunner

from retrieval.cli import cli

from .conftest import DEMO_CSV
from .test_processes import TWIN, one_line_error, twin


def test_calibrate_needs_a_model_or_an_index(tmp_path):
    help_text = CliRunner().invoke(cli, ["calibrate", "--help"]).output
    assert "--model" in help_text and "--index" in help_text and "default: packaged" not in help_text
    pairs = tmp_path / "p.csv"
    pairs.write_text("question1,question2,is_duplicate\na b,a c,1\n")
    result = CliRunner().invoke(cli, ["calibrate", str(pairs)])
    assert result.exit_code == 1 and result.output.strip() == (
        "Error: give PAIRS and --model (a model's tau), or --index (an index's tau)")


def test_serve_on_a_taken_port_says_so_before_anything_else(demo_index_dir):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = twin("serve", "--index", demo_index_dir, "--port", port)
    err = one_line_error(result, f"port {port} on 127.0.0.1 is taken")
    assert "serving" not in result.output + err


def test_query_into_a_closed_pipe_exits_quietly(demo_index_dir):
    queries = "\n".join(f"How do I reset my password, take {i}?" for i in range(200)) + "\n"
    twin_proc = subprocess.Popen([*TWIN, "query", "--index", str(demo_index_dir), "-k", "3"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    head = subprocess.Popen(["head", "-n", "2"], stdin=twin_proc.stdout, stdout=subprocess.PIPE)
    twin_proc.stdout.close()
    twin_proc.stdin.write(queries.encode())
    twin_proc.stdin.close()
    assert len(head.communicate(timeout=120)[0].splitlines()) == 2
    assert twin_proc.wait(120) == 0
    assert twin_proc.stderr.read().decode().strip() == ""


def test_query_answers_each_stdin_line_as_it_comes(demo_index_dir):
    proc = subprocess.Popen([*TWIN, "query", "--index", str(demo_index_dir), "--json", "-k", "1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        for question in ("Where are you from?", "How old are you?"):
            proc.stdin.write(question + "\n")
            proc.stdin.flush()
            answer = json.loads(proc.stdout.readline())  # answered while stdin is still open
            assert answer["query"] == question and answer["matches"]
    finally:
        proc.stdin.close()
        proc.wait(60)
    assert proc.returncode == 0


def test_dedup_refuses_an_unknown_output_suffix(demo_index_dir, tmp_path):
    incoming = tmp_path / "in.csv"
    incoming.write_text("id,text\nn1,Where are you from?\n")
    one_line_error(twin("dedup", incoming, "--index", demo_index_dir, "-o", tmp_path / "out.json"),
                   "unknown output suffix '.json'")
    assert not (tmp_path / "out.json").exists()
    assert twin("dedup", incoming, "--index", demo_index_dir, "-o", tmp_path / "out.jsonl").exit_code == 0
    assert json.loads((tmp_path / "out.jsonl").read_text())["duplicate"] is True


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path):
    done = subprocess.run([*TWIN, "build", str(DEMO_CSV), "--index", str(tmp_path / "ix")], capture_output=True,
                          text=True, env={**os.environ, "TWIN_PROGRESS_SECONDS": "0"}, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("indexing: ")]
    assert lines and "/258 items" in lines[-1] and "\r" not in done.stderr


def test_the_encoder_sees_a_bounded_set_of_input_shapes():
    """Each new input shape costs torch's CPU kernels memory for good; padding keeps shapes few."""
    from retrieval.encoders import load_encoder

    encoder = load_encoder(backend="torch")
    shapes: set[tuple[int, ...]] = set()

    def record(_, args, kwargs) -> None:  # noqa: ANN001
        shapes.add(tuple((kwargs["input_ids"] if "input_ids" in kwargs else args[0]).shape))

    hook = encoder.model[0].auto_model.register_forward_pre_hook(record, with_kwargs=True)
    rng = random.Random(0)
    try:
        for _ in range(60):
            rows = rng.randint(1, 64)
            encoder.encode([" ".join(["word"] * rng.randint(1, 40)) + f" {n}" for n in range(rows)])
    finally:
        hook.remove()
    assert all(tokens % 16 == 0 for _, tokens in shapes), shapes
    assert len({rows for rows, _ in shapes}) <= 12 and len(shapes) <= 40, sorted(shapes)


def test_the_serve_socket_gets_nagle_turned_off():
    """asyncio sets TCP_NODELAY only on sockets whose protocol says TCP; without it every small
    answer of `twin serve` waited ~40 ms for the client's delayed ACK."""
    import asyncio

    from retrieval.cli.serve import _bind

    async def accept_one() -> int:
        sock = _bind("127.0.0.1", 0)
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.Transport) -> None:
                raw = transport.get_extra_info("socket")
                accepted.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    assert asyncio.run(accept_one()) != 0
