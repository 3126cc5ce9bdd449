"""Untrusted text that PostgreSQL must store: one rule, for every boundary.

A `text` column refuses NUL, and a str holding a lone surrogate cannot be encoded as UTF-8
at all. Both reach us easily: JSON may carry ``\\u0000`` and ``\\ud800``, a query string
``%00``, and header bytes that are not UTF-8 arrive surrogate-escaped. Left unchecked, each
becomes a 500 when the row is written. `StorableText` refuses them at the pydantic
boundary, so the caller answers with its usual 400 or 422. A value with other rules wraps
them, ``Storable[Annotated[str, StringConstraints(max_length=200)]]`` (an indexed id: an
index refuses text much over 2 kB), so pydantic applies those first (stripping included)
and this check last. `is_storable` is the same check for text read without a model.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import AfterValidator

__all__ = ["Storable", "StorableText", "check_storable", "is_storable", "printable_text"]

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
