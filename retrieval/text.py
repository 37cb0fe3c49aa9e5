"""The one text normalisation used by training, calibration, indexing and querying."""

from __future__ import annotations

import re
import unicodedata

# Penn Treebank / CoreNLP escapes and quote styles, as found in tokenised corpora (e.g. BiMPM QQP).
_PTB = {
    "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}",
    "``": '"', "''": '"',
}
_PTB_RE = re.compile("|".join(re.escape(k) for k in _PTB))
_SPACE_BEFORE = re.compile(r"\s+([?!.,;:%)\]}]|'s\b|n't\b|'re\b|'ve\b|'ll\b|'d\b|'m\b)")
_SPACE_AFTER = re.compile(r"([(\[{$])\s+")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Unicode NFC, CoreNLP artefacts undone (``-LRB-`` -> ``(``, ` `` ` -> ``"``, no space before
    ``?`` or ``'s``), runs of whitespace made one space, ends stripped. Case is kept."""
    text = unicodedata.normalize("NFC", text)
    text = _PTB_RE.sub(lambda m: _PTB[m.group(0)], text)
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE.sub(r"\1", text)
    return _SPACE_AFTER.sub(r"\1", text)
