"""The shared text normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retrieval.text import normalize


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("How do I get funding for my web based startup idea ?", "How do I get funding for my web based startup idea?"),
        ("What is the USA 's -LRB- best -RRB- city ?", "What is the USA's (best) city?"),
        ("He said `` hi '' .", 'He said " hi ".'),
        ("I do n't know ; it costs $ 5 .", "I don't know; it costs $5."),
        ("  tabs\tand\nnewlines  ", "tabs and newlines"),
        ("cafe\u0301", "caf\u00e9"),
    ],
)
def test_normalize(raw, clean):
    assert normalize(raw) == clean


@given(st.text())
def test_normalize_is_idempotent(text):
    once = normalize(text)
    assert normalize(once) == once
