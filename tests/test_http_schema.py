"""schemathesis against a live `twin serve`, every check on: generated requests (valid, invalid,
and sequences of calls) must get answers that the OpenAPI document describes, and no 5xx.
Bounded by count, not time, so that every phase runs on a slow machine too (a time budget let
the coverage phase spend it all and skip fuzzing): SCHEMATHESIS_EXAMPLES (default 20) generated
requests an operation a phase, a fixed seed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .test_processes import serve

EXAMPLES = os.environ.get("SCHEMATHESIS_EXAMPLES", "20")


#: A verdict on an item paired with itself is schema-valid (JSON Schema cannot say two fields
#: differ) and refused with 422; every other operation keeps schemathesis's expectations.
CONFIG = """
[[operations]]
include-path = "/feedback"
include-method = "POST"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422"]
"""


def test_schemathesis_all_checks_pass(index_copy, tmp_path):
    (tmp_path / "schemathesis.toml").write_text(CONFIG)
    server, base = serve(index_copy)
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("schemathesis")), "run", f"{base}/openapi.json", "--checks", "all",
             "--max-examples", EXAMPLES, "--seed", "1", "--workers", "2", "--no-color"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        server.terminate()
        server.wait(60)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-6000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", report)
    assert generated and generated.group(1) == generated.group(2) and int(generated.group(1)) >= 100, report[-3000:]
    assert "Tested: 15" in report, report[-3000:]  # every operation of the document
