"""Property-based run over the OpenAPI schema: no generated request gets a 5xx."""

from __future__ import annotations

import shutil

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from .test_http import running


def test_no_server_errors(demo_index_dir, tmp_path):
    folder = tmp_path / "index"
    shutil.copytree(demo_index_dir, folder)
    with running(folder, max_texts=8, max_chars=200) as base:
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 9
        statuses: list[int] = []
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def no_5xx(case):
                statuses.append(case.call_and_validate(base_url=base, checks=[not_a_server_error]).status_code)

            no_5xx()
    assert len(statuses) >= 3 * len(operations)  # generated requests really went out
    assert any(s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
