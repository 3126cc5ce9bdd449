"""`nests_too_deeply`: the nesting limit checked before any JSON body is parsed."""

from __future__ import annotations

import json
import time

import pytest

from bitloot.nowpayments.signature import MalformedIpn, parse_ipn_json
from bitloot.text import MAX_JSON_DEPTH, nests_too_deeply


def nested(depth: int, kind: str = "[") -> bytes:
    closing = {"[": "]", '{"a":': "}"}[kind]
    return (kind * depth + "0" + closing * depth).encode()


@pytest.mark.parametrize("kind", ["[", '{"a":'])
def test_the_limit_is_exact(kind: str) -> None:
    assert not nests_too_deeply(nested(MAX_JSON_DEPTH, kind))
    assert nests_too_deeply(nested(MAX_JSON_DEPTH + 1, kind))
    assert json.loads(nested(MAX_JSON_DEPTH, kind))  # what passes is plain JSON


def test_mixed_and_sibling_containers_count_by_depth_not_number() -> None:
    mixed = ('{"a":[' * 16 + "0" + "]}" * 16).encode()  # 32 deep
    assert not nests_too_deeply(mixed)
    assert not nests_too_deeply(b"[" + b",".join([b"[[]]"] * 10_000) + b"]")
    assert nests_too_deeply(b'[1, {"x": ' + nested(MAX_JSON_DEPTH) + b"}]")


def test_brackets_inside_strings_do_not_count() -> None:
    assert not nests_too_deeply(json.dumps({"s": "[" * 1000, "t": "{" * 1000}).encode())
    assert not nests_too_deeply(json.dumps({"s": '\\"' + "[" * 100 + '"'}).encode())
    escaped_quote = b'["\\"' + b"[" * 100 + b'"]'  # the quote is escaped: still in the string
    assert not nests_too_deeply(escaped_quote)
    assert json.loads(escaped_quote)


def test_brackets_that_do_not_pair_are_left_to_the_parser() -> None:
    assert not nests_too_deeply(b"[" * 10_000 + b"}")
    assert not nests_too_deeply(b"{" * 40 + b"]" * 40)


@pytest.mark.parametrize(
    "body",
    [
        nested(10_000),
        nested(10_000, '{"a":'),
        b"[" * 10_000,
        (nested(MAX_JSON_DEPTH - 1) + b",") * 1000,  # the most passes over the most bytes
        b"[" + b",".join([b"[]"] * 30_000) + b"]",
    ],
    ids=["arrays", "objects", "unclosed", "many-just-under", "wide"],
)
def test_it_is_fast_on_the_largest_bodies(body: bytes) -> None:
    started = time.perf_counter()
    for _ in range(10):
        nests_too_deeply(body)
    assert (time.perf_counter() - started) / 10 < 0.05


def test_an_ipn_nested_too_deeply_is_malformed_before_it_is_parsed() -> None:
    # 300 levels parse, and re-serialising them for the signature would recurse ~900 deep.
    body = b'{"payment_id": 1, "payment_status": "waiting", "x": ' + nested(300) + b"}"
    with pytest.raises(MalformedIpn, match="nests deeper than 32"):
        parse_ipn_json(body)
    with pytest.raises(MalformedIpn):
        parse_ipn_json(nested(10_000, '{"a":'))
