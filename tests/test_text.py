"""`bitloot.text`: the one rule for untrusted text PostgreSQL must store, and the models at
the boundaries that use it (what each endpoint answers is tested with the endpoint)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, StringConstraints, ValidationError

from bitloot.admin.models import PaymentListQuery, ReasonIn
from bitloot.kinguin.models import OrderStatusEvent
from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import MalformedIpn
from bitloot.text import Storable, StorableText, check_storable, is_storable, printable_text

# Header bytes that are not UTF-8 arrive surrogate-escaped (b"\xff" -> "\udcff").
UNDECODABLE = b"ab\xff".decode("utf-8", "surrogateescape")
UNSTORABLE = ["a\x00b", "\x00", "K\ud800", UNDECODABLE]
STORABLE = ["", "plain", "Clé «Édition» 🎮", "tab\tand\nnewline", "\u2028"]


@pytest.mark.parametrize("text", STORABLE)
def test_storable_text_is_kept_as_is(text: str) -> None:
    assert is_storable(text)
    assert check_storable(text) == text


@pytest.mark.parametrize("text", UNSTORABLE)
def test_nul_and_lone_surrogates_are_refused(text: str) -> None:
    assert not is_storable(text)
    with pytest.raises(ValueError) as info:
        check_storable(text)
    assert text not in str(info.value)


class Sample(BaseModel):
    text: StorableText
    short: Storable[Annotated[str, StringConstraints(max_length=5)]] = "x"
    reason: Storable[
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=9)]
    ] = "x"
    ids: list[Storable[Annotated[str, StringConstraints(max_length=5)]]] = []


def errors(data: dict[str, Any]) -> list[tuple[tuple[int | str, ...], str]]:
    with pytest.raises(ValidationError) as info:
        Sample.model_validate(data)
    return [(e["loc"], e["msg"]) for e in info.value.errors()]


def test_the_model_type_names_the_field_and_the_rule_never_the_value() -> None:
    assert errors({"text": "a\x00b"}) == [(("text",), "Value error, contains NUL")]
    assert errors({"text": "K\ud800"}) == [(("text",), "Value error, is not valid Unicode text")]
    assert errors({"text": "ok", "ids": ["1", "2\x00"]}) == [
        (("ids", 1), "Value error, contains NUL")
    ]


def test_the_wrapped_rules_apply_first_stripping_included() -> None:
    assert Sample.model_validate({"text": "t", "reason": "  why  "}).reason == "why"
    assert errors({"text": "t", "short": "123456"}) == [
        (("short",), "String should have at most 5 characters")
    ]
    assert errors({"text": "t", "reason": "   "}) == [
        (("reason",), "String should have at least 1 character")
    ]
    assert errors({"text": "t", "reason": " \x00 "}) == [(("reason",), "Value error, contains NUL")]


def test_printable_text_keeps_what_prints_and_cuts_it() -> None:
    assert printable_text("Mozilla/5.0\x00\x1b[31m\r\n" + UNDECODABLE, 100) == "Mozilla/5.0[31mab"
    assert printable_text("x" * 300, 256) == "x" * 256
    for nothing in (None, "", "\x00\x01\ud800"):
        assert printable_text(nothing, 256) is None


IPN = {"payment_id": 5077125051, "payment_status": "finished", "price_amount": "14.99"}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"order_description": "a\x00"}, "order_description"),
        ({"pay_address": "\ud800"}, "pay_address"),
        ({"pay_currency": "bt\x00c"}, "pay_currency"),
        ({"payment_id": "9" * 201}, "payment_id"),
        ({"order_id": "x" * 201}, "order_id"),
        ({"payment_extra_ids": [1, "2" * 201]}, "payment_extra_ids"),
        ({"price_amount": "1e18"}, "price_amount"),
        ({"actually_paid": "1e-31"}, "actually_paid"),
        ({"fee": {"currency": "x\x00", "depositFee": "-1e20"}}, "fee.currency, fee.depositFee"),
    ],
)
def test_an_ipn_the_database_cannot_store_is_malformed_naming_the_fields(
    fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(MalformedIpn) as info:
        Ipn.from_parsed({**IPN, **fields})
    assert str(info.value) == f"IPN body has invalid fields: {named}"


def test_an_ipn_within_the_limits_is_accepted() -> None:
    long_text = {"order_description": "x" * 5000, "payment_id": "9" * 200}
    ipn = Ipn.from_parsed({**IPN, **long_text, "actually_paid": "0", "pay_amount": "1e-30"})
    assert ipn.payment_id == "9" * 200


@pytest.mark.parametrize(
    "ids", [{"orderId": "K\x00"}, {"orderId": "K" * 201}, {"orderExternalId": "\udcff"}]
)
def test_a_kinguin_event_with_ids_the_database_cannot_store_is_invalid(
    ids: dict[str, str],
) -> None:
    event = {"orderId": "K1", "status": "completed", "updatedAt": "2025-03-01T12:00:00Z", **ids}
    with pytest.raises(ValidationError):
        OrderStatusEvent.model_validate(event)


def test_admin_text_is_storable() -> None:
    with pytest.raises(ValidationError) as info:
        ReasonIn.model_validate({"reason": "re\x00stocked"})
    assert [e["loc"] for e in info.value.errors()] == [("reason",)]
    with pytest.raises(ValidationError) as info:
        PaymentListQuery.model_validate({"email": "a\x00@example.com", "cursor": "\x00"})
    assert [e["loc"] for e in info.value.errors()] == [("email",), ("cursor",)]
