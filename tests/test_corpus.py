"""Corpus readers: every format, and bad input located by file, line and column."""

from __future__ import annotations

import pytest

from retrieval.corpus import Columns, read_corpus
from retrieval.errors import InputError


def write(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def test_csv_with_id_text_and_payload(tmp_path):
    path = write(tmp_path, "a.csv", 'id,text,lang\nq1,"Hello, world",en\nq2,"Two\nlines",fr\nq3,Bye,de\n')
    rows = list(read_corpus(path))
    assert [(r.id, r.text, r.payload, r.line) for r in rows] == [
        ("q1", "Hello, world", {"lang": "en"}, 2),
        ("q2", "Two\nlines", {"lang": "fr"}, 3),
        ("q3", "Bye", {"lang": "de"}, 5),
    ]


def test_tsv_without_header_by_column_number(tmp_path):
    path = write(tmp_path, "pairs.tsv", '1\tHow do I "quote" ?\tOther\t77\n0\tSecond\tThird\t78\n')
    rows = list(read_corpus(path, Columns(text="2", id="4", header=False)))
    assert [(r.id, r.text, r.payload) for r in rows] == [
        ("77", 'How do I "quote" ?', {"1": "1", "3": "Other"}),
        ("78", "Second", {"1": "0", "3": "Third"}),
    ]


def test_jsonl_and_text_and_parquet(tmp_path):
    jsonl = write(tmp_path, "a.jsonl", '{"id": 7, "text": "seven", "tags": ["x"]}\n\n{"text": "no id"}\n')
    assert [(r.id, r.text, r.payload) for r in read_corpus(jsonl)] == [
        ("7", "seven", {"tags": ["x"]}), ("3", "no id", {})]
    text = write(tmp_path, "a.txt", "first\n\n  second  \n")
    assert [(r.id, r.text) for r in read_corpus(text)] == [("1", "first"), ("3", "second")]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a", "b"], "text": ["alpha", "beta"], "n": [1, 2]}), tmp_path / "a.parquet")
    rows = list(read_corpus(tmp_path / "a.parquet"))
    assert [(r.id, r.text, r.payload) for r in rows] == [("a", "alpha", {"n": 1}), ("b", "beta", {"n": 2})]


def test_utf8_bom_is_ignored(tmp_path):
    path = write(tmp_path, "bom.csv", "\ufeffid,text\n1,hi\n")
    assert [r.text for r in read_corpus(path)] == ["hi"]


@pytest.mark.parametrize(
    ("name", "content", "columns", "where", "message"),
    [
        ("a.csv", "id,body\n1,x\n", Columns(), ":1", "no column 'text'; columns are: id, body"),
        ("a.csv", "id,text\n1,x\n", Columns(text="question"), ":1", "no column 'question'"),
        ("a.csv", "id,text\n1,x\n2,  \n", Columns(), ":3:2", "empty text in column 'text'"),
        ("a.csv", "id,text\n1,x\n2,y,z\n", Columns(), ":3", "3 fields, expected 2"),
        ("a.csv", "id,text\n,x\n", Columns(), ":2:1", "empty id"),
        ("a.jsonl", '{"text": "ok"}\n{"text": "ok"}\n{"text": oops}\n', Columns(), ":3:10", "malformed JSON"),
        ("a.jsonl", '{"text": "ok"}\n[1, 2]\n', Columns(), ":2:1", "expected a JSON object"),
        ("a.jsonl", '{"text": 5}\n', Columns(), ":1:1", "not text"),
        ("a.jsonl", '{"text": "a"}\n{"body": "b"}\n', Columns(), ":2", "no column 'text'"),
    ],
)
def test_bad_input_names_file_line_and_column(tmp_path, name, content, columns, where, message):
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as info:
        list(read_corpus(path, columns))
    assert str(info.value).startswith(f"{path}{where}: ")
    assert message in str(info.value)


def test_non_utf8_bytes_are_located(tmp_path):
    path = write(tmp_path, "a.txt", b"fine\nalso fine\nbad \xff byte\n")
    with pytest.raises(InputError, match=r"a\.txt:3:5: not UTF-8 \(byte 0xff\)"):
        list(read_corpus(path))


def test_missing_file_and_damaged_parquet(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(read_corpus(tmp_path / "nope.csv"))
    path = write(tmp_path, "x.parquet", b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(read_corpus(path))
