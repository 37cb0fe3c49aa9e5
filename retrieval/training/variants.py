"""Word-level variants of the training texts, for the distillation term only: the teacher scores
how far each variant moved from its text, and the student learns which words matter.

Tang et al., "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks" (2019),
found such a transfer set essential when distilling a BiLSTM from BERT: they mask words, replace
words with others of the same part of speech, and sample n-grams. Here, with no tagger: each word
is, with probability ``rate``, replaced by a word drawn from the training texts (drawn as often as
it occurs there), and with probability ``rate`` dropped; at least one word changes. Variants are
natural text for both encoders (no [MASK] token that serving never sees).
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def word_variants(texts: Sequence[str], seed: int = 0, rate: float = 0.15) -> dict[str, str]:
    """One variant of each distinct text of ``texts`` (a text of one word or none maps to itself
    with a word drawn from the corpus beside it). Same texts, same seed: same variants."""
    rng = random.Random(seed)
    unique = sorted(set(texts))
    corpus = [word for text in unique for word in text.split()]
    if not corpus:
        return {text: text for text in unique}
    return {text: _variant(text.split(), corpus, rng, rate) for text in unique}


def _variant(words: list[str], corpus: list[str], rng: random.Random, rate: float) -> str:
    """``words`` with some replaced and some dropped; at least one changed."""
    out: list[str] = []
    changed = False
    for word in words:
        draw = rng.random()
        if draw < rate:
            out.append(_other(word, corpus, rng))
            changed = True
        elif draw < 2 * rate and len(words) > 1:
            changed = True
        else:
            out.append(word)
    if not changed:
        if len(words) > 1:
            at = rng.randrange(len(out))
            out[at] = _other(out[at], corpus, rng)
        else:
            out.append(rng.choice(corpus))
    return " ".join(out)


def _other(word: str, corpus: list[str], rng: random.Random, tries: int = 10) -> str:
    """A corpus word other than ``word`` (or, in a corpus of little else, possibly ``word``)."""
    for _ in range(tries):
        drawn = rng.choice(corpus)
        if drawn != word:
            return drawn
    return drawn
