"""The readers and the CLI on the real files of ../shared/data (skipped when it is absent)."""

from __future__ import annotations

import json
from itertools import islice

from retrieval.pairs import PairColumns, read_labelled

from .test_cli import twin


def test_qqp_bimpm_dev_reads_as_labelled_pairs(shared_data):
    data = read_labelled(shared_data / "qqp-bimpm" / "dev.tsv")
    assert len(data.pairs) == 10_000
    assert sum(p.label for p in data.pairs) == 5_000


def test_mrpc_test_file_reads_with_its_column_names(shared_data):
    columns = PairColumns("#1 String", "#2 String", "Quality")
    data = read_labelled(shared_data / "mrpc" / "msr_paraphrase_test.txt", columns)
    assert len(data.pairs) == 1_725 and sum(p.label for p in data.pairs) == 1_147


def test_build_and_query_qqp_questions(shared_data, tmp_path, encoder):
    sample = tmp_path / "qqp.tsv"
    with open(shared_data / "qqp-bimpm" / "dev.tsv", encoding="utf-8") as f:
        sample.write_text("".join(islice(f, 300)))
    result = twin("build", sample, "--no-header", "--text-column", "2", "--id-column", "4", "--index", tmp_path / "ix")
    assert result.exit_code == 0, result.output
    first = sample.read_text().splitlines()[0].split("\t")
    answer = json.loads(twin("query", "--index", tmp_path / "ix", "--json", "-k", "1", first[1]).stdout)
    top = answer["matches"][0]
    assert top["text"] == first[1] and top["score"] > 0.999
    assert set(top["payload"]) == {"1", "3"}  # the label and the other question ride along
