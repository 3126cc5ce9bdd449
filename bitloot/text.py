"""Untrusted text that PostgreSQL must store: one rule, for every boundary.

A `text` column refuses NUL, and a str holding a lone surrogate cannot be encoded as UTF-8
at all. Both reach us easily: JSON may carry ``\\u0000`` and ``\\ud800``, a query string
``%00``, and header bytes that are not UTF-8 arrive surrogate-escaped. Left unchecked, each
becomes a 500 when the row is written. `StorableText` refuses them at the pydantic
boundary, so the caller answers with its usual 400 or 422. A value with other rules wraps
them, ``Storable[Annotated[str, StringConstraints(max_length=200)]]`` (an indexed id: an
index refuses text much over 2 kB), so pydantic applies those first (stripping included)
and this check last. `is_storable` is the same check for text read without a model.

`nests_too_deeply` is the other check every JSON boundary makes (request bodies, both
webhooks), before parsing: a body nested thousands deep is a 400, not a RecursionError.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, TypeVar

from pydantic import AfterValidator

__all__ = [
    "MAX_JSON_DEPTH",
    "Storable",
    "StorableText",
    "check_storable",
    "is_storable",
    "nests_too_deeply",
    "printable_text",
]

_Text = TypeVar("_Text", bound=str)


def is_storable(text: str) -> bool:
    """True when a PostgreSQL text column can hold `text` (no NUL, no lone surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_storable(text: str) -> str:
    """`text` unchanged, or `ValueError` naming the problem (never quoting the text)."""
    if "\x00" in text:
        raise ValueError("contains NUL")
    if not is_storable(text):
        raise ValueError("is not valid Unicode text")
    return text


Storable = Annotated[_Text, AfterValidator(check_storable)]
StorableText = Storable[str]


def printable_text(text: str | None, max_chars: int) -> str | None:
    """What prints of `text` (control characters, NUL and lone surrogates dropped), cut
    to `max_chars`; None when nothing is left. For text kept as a hint, never refused."""
    if not text:
        return None
    return "".join(ch for ch in text if ch.isprintable())[:max_chars] or None


# No body BitLoot reads nests deeper than 4; this leaves room and keeps every recursive
# walk over a parsed body (pydantic, the IPN re-serialiser) far from Python's limit.
MAX_JSON_DEPTH: Final = 32
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def nests_too_deeply(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when the JSON text `raw` nests arrays and objects more than `limit` deep.

    Checked before parsing, at C speed: json.loads recurses once per level and raises
    RecursionError somewhere near a thousand levels (where exactly depends on how deep the
    caller's stack already is), and whatever walks the parsed value recurses too. Strings
    are dropped first (brackets inside them do not count), then each pass deletes every
    innermost `[]` and `{}` pair: a text at most `limit` deep is empty after `limit`
    passes. Brackets that do not pair up are not JSON: False, and the parser refuses it.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET)
    for _ in range(limit):
        shorter = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if shorter == brackets:
            return False  # mismatched brackets: the parser's error to report
        brackets = shorter
    return bool(brackets)
