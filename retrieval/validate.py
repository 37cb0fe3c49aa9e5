"""The rules an item must meet to be stored, one set for every face (CLI files, HTTP bodies,
Python callers). Each check returns what is wrong, in words, or None.

- An id is 1-512 characters, not blank, with no control character (a newline, a tab, NUL) and no
  unpaired surrogate: it must survive a URL path, a CSV cell, a log line and SQLite unchanged.
- A text is not blank and has no unpaired surrogate (it cannot be encoded as UTF-8).
- A payload is a JSON object at most ``MAX_PAYLOAD_DEPTH`` levels deep and ``MAX_PAYLOAD_CHARS``
  characters as JSON, of JSON values only (no NaN or infinity), with no unpaired surrogate.
"""

from __future__ import annotations

import json
import math
import re

MAX_ID_CHARS = 512
MAX_PAYLOAD_DEPTH = 32
MAX_PAYLOAD_CHARS = 100_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: Whitespace spelled out: what Python's str.isspace() and ECMAScript's \s call whitespace (they
#: differ: U+0085 and U+001C-U+001F for Python, U+FEFF for ECMAScript). Written as an explicit
#: class, the OpenAPI patterns below mean the same to Python and to JSON Schema tools.
_SPACE = r"\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
#: The same rules as JSON Schema patterns, for the OpenAPI document (and clients generated from it).
TEXT_PATTERN = f"[^{_SPACE}]"
ID_PATTERN = f"^(?=.*{TEXT_PATTERN})[^\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029]+$"


def surrogate_problem(text: str) -> str | None:
    """An unpaired surrogate (not encodable as UTF-8), with its position, or None."""
    found = _SURROGATE.search(text)
    if found:
        return f"has an unpaired surrogate U+{ord(found.group()):04X} at character {found.start() + 1}"
    return None


def id_problem(item_id: object) -> str | None:
    """What is wrong with an item id, or None."""
    if not isinstance(item_id, str):
        return f"is {type(item_id).__name__}, not text"
    if not re.search(TEXT_PATTERN, item_id):
        return "is empty" if not item_id else "is blank"
    if len(item_id) > MAX_ID_CHARS:
        return f"has {len(item_id)} characters; the limit is {MAX_ID_CHARS}"
    control = _CONTROL.search(item_id)
    if control:
        return f"has a control character U+{ord(control.group()):04X} at character {control.start() + 1}"
    return surrogate_problem(item_id)


def text_problem(text: object) -> str | None:
    """What is wrong with an item's or a query's text, or None."""
    if not isinstance(text, str):
        return f"is {type(text).__name__}, not text"
    if not re.search(TEXT_PATTERN, text):
        return "is empty"
    return surrogate_problem(text)


def payload_problem(payload: object) -> str | None:
    """What is wrong with a payload, or None."""
    if not isinstance(payload, dict):
        return f"is {type(payload).__name__}, not a JSON object"
    problem = _value_problem(payload, "$", 1)
    if problem:
        return problem
    size = len(json.dumps(payload, ensure_ascii=False))
    if size > MAX_PAYLOAD_CHARS:
        return f"is {size} characters as JSON; the limit is {MAX_PAYLOAD_CHARS}"
    return None


def _value_problem(value: object, where: str, depth: int) -> str | None:
    if depth > MAX_PAYLOAD_DEPTH:
        return f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels (at {where})"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"has a key that is {type(key).__name__}, not text (at {where})"
            inner = f"{where}.{key}" if len(where) < 200 else where
            problem = surrogate_problem(key) and f"key at {inner} {surrogate_problem(key)}"
            problem = problem or _value_problem(item, inner, depth + 1)
            if problem:
                return problem
    elif isinstance(value, list):
        for n, item in enumerate(value):
            problem = _value_problem(item, f"{where}[{n}]" if len(where) < 200 else where, depth + 1)
            if problem:
                return problem
    elif isinstance(value, str):
        problem = surrogate_problem(value)
        return f"value at {where} {problem}" if problem else None
    elif isinstance(value, float) and not math.isfinite(value):
        return f"value at {where} is {value}, which JSON cannot hold"
    elif value is not None and not isinstance(value, bool | int | float):
        return f"value at {where} is {type(value).__name__}, not a JSON value"
    return None
