"""NOWPayments IPN signatures: HMAC-SHA512 over a canonical, key-sorted JSON text.

The server's exact serialisation is not documented precisely (docs/external-apis.md 2.8),
so the verifier re-serialises the received body in every plausible way and accepts the
body when any of them carries a matching HMAC. Every candidate still needs the secret,
so accepting several does not weaken the check. Numbers are never converted: each number
token is kept as the text that was received (`RawNumber`) and written back verbatim,
because Python would rewrite ``0.0000635`` as ``6.35e-05`` and break the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Final, NoReturn

from bitloot.text import MAX_JSON_DEPTH, nests_too_deeply

__all__ = [
    "SIGNATURE_VARIANTS",
    "MalformedIpn",
    "RawNumber",
    "canonical_ipn_json",
    "dump_json",
    "parse_ipn_json",
    "sign_ipn",
    "verify_ipn_signature",
]


class RawNumber(str):
    """A JSON number token, kept exactly as it was written (``0.0000635``, ``5077125051``)."""

    __slots__ = ()


class MalformedIpn(ValueError):
    """The IPN body is not a JSON object, or does not have the shape of a payment IPN."""


# (name, ensure_ascii, arrays_as_objects), in the order they are reported.
# utf8 first: the server is most likely Node, whose JSON.stringify writes non-ASCII as is.
SIGNATURE_VARIANTS: Final[tuple[tuple[str, bool, bool], ...]] = (
    ("utf8-lists", False, False),
    ("ascii-lists", True, False),
    ("utf8-objects", False, True),
    ("ascii-objects", True, True),
)

# A str left with a surrogate code point after json.loads holds a *lone* surrogate (pairs
# are joined into one code point). Node's JSON.stringify escapes those as lower-case \uXXXX.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# ECMAScript array-index keys: enumerated before all other keys, in numeric order.
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")
_MAX_ARRAY_INDEX: Final = 2**32 - 2


def _reject_constant(token: str) -> NoReturn:
    # NaN and Infinity are not JSON, and JSON.stringify never writes them.
    raise MalformedIpn(f"invalid JSON number {token!r}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # A duplicated key would be read one way by us and maybe another way by whoever signed
    # it; refusing it keeps "what was verified" and "what is processed" the same object.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise MalformedIpn("duplicate key in JSON object")
    return obj


def parse_ipn_json(raw: bytes) -> Any:
    """Parse an IPN body, keeping every number as a `RawNumber`; raise `MalformedIpn`.

    The result is always a ``dict``: a body that is not a JSON object is malformed, and so
    is one nested deeper than `MAX_JSON_DEPTH` (refused before parsing: the re-serialising
    for the signature recurses three frames per level, so a few hundred levels that
    json.loads accepts would otherwise end in a RecursionError there).
    """
    if nests_too_deeply(raw):
        raise MalformedIpn(f"IPN body nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        text = raw.decode("utf-8")
        obj = json.loads(
            text,
            parse_float=RawNumber,
            parse_int=RawNumber,
            parse_constant=_reject_constant,
            object_pairs_hook=_unique_keys,
        )
    except UnicodeDecodeError as exc:
        raise MalformedIpn("IPN body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        raise MalformedIpn(f"IPN body is not valid JSON: {exc.msg} at {exc.pos}") from exc
    except RecursionError as exc:
        raise MalformedIpn("IPN body is nested too deeply") from exc
    if not isinstance(obj, dict):
        raise MalformedIpn("IPN body is not a JSON object")
    return obj


def _dump_str(value: str, ensure_ascii: bool) -> str:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    if ensure_ascii:
        return text  # already escapes every non-ASCII code point, surrogates included
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _js_key_order(keys: list[str]) -> list[str]:
    # Node builds the sorted object and JSON.stringify enumerates it: array-index keys
    # come first in numeric order whatever the insertion order, so "10" follows "9".
    index_keys: list[str] = []
    other_keys: list[str] = []
    for k in keys:
        is_index = _ARRAY_INDEX.fullmatch(k) is not None and int(k) <= _MAX_ARRAY_INDEX
        (index_keys if is_index else other_keys).append(k)
    return sorted(index_keys, key=int) + sorted(other_keys)


def _emit(value: Any, ensure_ascii: bool, arrays_as_objects: bool, sort_keys: bool) -> str:
    if isinstance(value, RawNumber):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "true" if value else "false"
    if isinstance(value, str):
        return _dump_str(value, ensure_ascii)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        by_key = {str(k): v for k, v in value.items()}
        keys = list(by_key)
        if sort_keys:
            keys = _js_key_order(keys) if arrays_as_objects else sorted(keys)
        members = (
            _dump_str(k, ensure_ascii)
            + ":"
            + _emit(by_key[k], ensure_ascii, arrays_as_objects, sort_keys)
            for k in keys
        )
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        if arrays_as_objects:
            # The official Node sortObject recurses into arrays as if they were objects.
            as_obj = {str(i): item for i, item in enumerate(value)}
            return _emit(as_obj, ensure_ascii, arrays_as_objects, sort_keys)
        items = (_emit(item, ensure_ascii, arrays_as_objects, sort_keys) for item in value)
        return "[" + ",".join(items) + "]"
    # Floats and Decimals have no single "as written" text; callers pass RawNumber instead.
    raise TypeError(f"cannot serialise {type(value).__name__} without changing its text")


def dump_json(value: Any, *, sort_keys: bool = False, ensure_ascii: bool = False) -> str:
    """Compact JSON with `RawNumber` written verbatim and keys in their given order.

    Floats and Decimals are refused (TypeError): wrap the intended text in `RawNumber`.
    """
    return _emit(value, ensure_ascii, False, sort_keys)


def canonical_ipn_json(obj: Any, *, ensure_ascii: bool, arrays_as_objects: bool) -> str:
    """The text NOWPayments signs: recursively key-sorted compact JSON, numbers verbatim.

    ``arrays_as_objects`` reproduces the Node ``sortObject`` quirk (``[7]`` -> ``{"0":7}``).
    """
    return _emit(obj, ensure_ascii, arrays_as_objects, True)


def _hmac_hex(secret: str, text: str) -> str:
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha512).hexdigest()


def verify_ipn_signature(raw_body: bytes, header_sig: str | None, secret: str) -> str | None:
    """Return the name of the serialisation variant whose HMAC matches, or None.

    A missing or empty header, or an empty secret, is a rejection (None), never a pass.
    Raises `MalformedIpn` when the header and secret are present but the body is not a
    JSON object, so the caller can answer 400 rather than 401.
    """
    if not (header_sig or "").strip() or not (secret or "").strip():
        return None
    return verify_parsed_ipn_signature(parse_ipn_json(raw_body), header_sig, secret)


def verify_parsed_ipn_signature(obj: Any, header_sig: str | None, secret: str) -> str | None:
    """`verify_ipn_signature` for a body already parsed with `parse_ipn_json`."""
    # `or ""` guards callers that pass an unset setting despite the type.
    received = (header_sig or "").strip().lower()
    key = (secret or "").strip()
    if not received or not key:
        return None
    # Bytes, not str: compare_digest raises TypeError on non-ASCII str input.
    received_bytes = received.encode("utf-8", "surrogateescape")
    seen: set[str] = set()
    for name, ensure_ascii, arrays_as_objects in SIGNATURE_VARIANTS:
        text = canonical_ipn_json(
            obj, ensure_ascii=ensure_ascii, arrays_as_objects=arrays_as_objects
        )
        # Most bodies are pure ASCII without arrays, so variants often coincide.
        if text in seen:
            continue
        seen.add(text)
        # Each comparison is constant-time. Stopping at the first match reveals only which
        # public serialisation the sender used, never anything about the secret or the MAC.
        if hmac.compare_digest(_hmac_hex(key, text).encode("ascii"), received_bytes):
            return name
    return None


def sign_ipn(raw_json_obj_or_bytes: bytes | str | Mapping[str, Any], secret: str) -> str:
    """Sign an IPN body the way the simulator does: UTF-8 as is, arrays kept as lists.

    Bytes or str are parsed first so that their number tokens are signed as written.
    """
    key = secret.strip()
    if not key:
        # NOWPayments sends no IPNs at all without a secret (docs 2.1).
        raise ValueError("an IPN secret is required to sign")
    obj: Any = raw_json_obj_or_bytes
    if isinstance(raw_json_obj_or_bytes, str):
        obj = parse_ipn_json(raw_json_obj_or_bytes.encode("utf-8"))
    elif isinstance(raw_json_obj_or_bytes, bytes):
        obj = parse_ipn_json(raw_json_obj_or_bytes)
    return _hmac_hex(key, canonical_ipn_json(obj, ensure_ascii=False, arrays_as_objects=False))
