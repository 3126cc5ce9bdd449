"""IPN signatures and IPN parsing, against vectors made outside this code.

The signatures below were computed with Node 20 (`crypto.createHmac('sha512', secret)`)
over `JSON.stringify` of the parsed body: the official `sortObject` snippet for the
"objects" variants, the same sort keeping arrays for the "lists" variants, and every
non-ASCII UTF-16 unit escaped as `\\uXXXX` (what PHP and Python write) for "ascii".
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bitloot.nowpayments.models import Ipn
from bitloot.nowpayments.signature import (
    MalformedIpn,
    RawNumber,
    canonical_ipn_json,
    dump_json,
    parse_ipn_json,
    sign_ipn,
    verify_ipn_signature,
)

SECRET = "test-ipn-secret-9f8e"

# Unsorted, as a server would send it: tiny amount, non-ASCII text, nested fee with string
# values, a two-element payment_extra_ids, updated_at in epoch milliseconds.
FULL_BODY = (
    '{"payment_id":5077125051,"parent_payment_id":null,"invoice_id":4522625843,'
    '"payment_status":"finished","pay_address":"bc1qexample","payin_extra_id":null,'
    '"price_amount":19.99,"price_currency":"eur","pay_amount":0.0003198,'
    '"actually_paid":0.0003198,"actually_paid_at_fiat":19.99,"pay_currency":"btc",'
    '"order_id":"ord_01HZX","order_description":"Clé «Édition» 🎮","purchase_id":"6084744717",'
    '"outcome_amount":0.0000635,"outcome_currency":"btc",'
    '"payment_extra_ids":[5513339153,5513339154],"fee":{"currency":"btc",'
    '"depositFee":"0.0000003","withdrawalFee":"0","serviceFee":"0.0000012"},'
    '"updated_at":1765432100123}'
).encode()
FULL_SIGS = {
    "utf8-lists": "9806e1de0636299a2bd7446eb129ff23663a4b52032bd1a09dd78d7e196a5abc"
    "b602b65afaac8391efafbc5778648c27d2905480ba7c477c666e06317f8bc73e",
    "ascii-lists": "a94ddfe0e89ea2d304464ab5e971d499ea8fad081959018c98ec10303e926b70"
    "47e38d3e17a52ee127538ca4c5c93e6459e11543c35f491b694c1695218712d1",
    "utf8-objects": "794c0b312251135df371002c603c9a068bb3ac6cc81c094808e92aafcf87336e"
    "61c08103bd32375d69facebd7f8619d4356c63585e44f9ab0a3618ce5283d78d",
    "ascii-objects": "e236ee9d7bd82b559c8f322a9a31556448a7c8a5c9b5fdbd63dfd948ca4e12c4"
    "aab29055c5cb97118e58904f8193a236f87150fdab14ad347830eb4a2bd98a49",
}
# ASCII only, no arrays: all four variants coincide.
PLAIN_BODY = (
    b'{"payment_id":5077125053,"invoice_id":null,"payment_status":"waiting",'
    b'"price_amount":10,"price_currency":"usd","pay_amount":0.000158,"actually_paid":0,'
    b'"order_id":"A-1","order_description":"Steam key","payment_extra_ids":null,'
    b'"fee":{"currency":"btc","depositFee":0,"withdrawalFee":0,"serviceFee":0}}'
)
PLAIN_SIG = (
    "ab57c62d1a02bc891dd371f55648fcb85b3493e1d8e453744d51df6b894fedb0"
    "017c3031086b62bb8df65c98b3ee0a8859362d5f7fe93a2f43d2d4f1d54db57e"
)
# Eleven array elements: Node enumerates the keys "0".."10" numerically, not as strings.
LONG_ARRAY_BODY = (
    b'{"payment_id":5077125052,"payment_status":"confirming",'
    b'"payment_extra_ids":[1,2,3,4,5,6,7,8,9,10,11],"outcome_amount":0.0000635}'
)
LONG_ARRAY_OBJECTS_SIG = (
    "ec88accec44e796b9f4e896504bfbd4ce4eb33e403bbabfe7760b78da4633a10"
    "bc0bfd9a55c96289dd5a15cbcb7a90776246a722475063e1f1a668da17fe0657"
)
LONG_ARRAY_LISTS_SIG = (
    "eb9b7bafe2d7dc220636b37cbf405557e9d13ee7e9bcf7d36b1ccb39f234fd30"
    "eeac1729da40539211bfc95ce1c9e67bda756f8c4dd0990ec95a3572fb6f2873"
)


def hmac_hex(text: str, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha512).hexdigest()


@pytest.mark.parametrize("variant", list(FULL_SIGS))
def test_every_variant_of_a_node_signed_body_is_accepted(variant: str) -> None:
    assert verify_ipn_signature(FULL_BODY, FULL_SIGS[variant], SECRET) == variant


def test_plain_body_matches_first_variant() -> None:
    assert verify_ipn_signature(PLAIN_BODY, PLAIN_SIG, SECRET) == "utf8-lists"


def test_array_index_keys_are_ordered_numerically_like_node() -> None:
    assert verify_ipn_signature(LONG_ARRAY_BODY, LONG_ARRAY_OBJECTS_SIG, SECRET) == "utf8-objects"
    assert verify_ipn_signature(LONG_ARRAY_BODY, LONG_ARRAY_LISTS_SIG, SECRET) == "utf8-lists"
    text = canonical_ipn_json(
        parse_ipn_json(LONG_ARRAY_BODY), ensure_ascii=False, arrays_as_objects=True
    )
    assert '"8":9,"9":10,"10":11}' in text


def test_canonical_text_keeps_tiny_amount_and_nests_fee() -> None:
    obj = parse_ipn_json(FULL_BODY)
    text = canonical_ipn_json(obj, ensure_ascii=False, arrays_as_objects=True)
    assert text.startswith(
        '{"actually_paid":0.0003198,"actually_paid_at_fiat":19.99,"fee":{"currency":"btc",'
        '"depositFee":"0.0000003","serviceFee":"0.0000012","withdrawalFee":"0"},'
    )
    assert '"outcome_amount":0.0000635,' in text
    assert '"payment_extra_ids":{"0":5513339153,"1":5513339154}' in text
    assert '"order_description":"Clé «Édition» 🎮"' in text


def test_ascii_variant_escapes_non_ascii_with_surrogate_pairs() -> None:
    obj = parse_ipn_json(FULL_BODY)
    text = canonical_ipn_json(obj, ensure_ascii=True, arrays_as_objects=False)
    assert '"Cl\\u00e9 \\u00ab\\u00c9dition\\u00bb \\ud83c\\udfae"' in text
    assert '"payment_extra_ids":[5513339153,5513339154]' in text


def test_python_json_roundtrip_would_break_the_tiny_amount() -> None:
    # The pitfall the RawNumber parsing exists for (docs 2.8, pitfall 1).
    naive = json.dumps(json.loads(FULL_BODY), separators=(",", ":"), sort_keys=True)
    assert "6.35e-05" in naive
    assert hmac_hex(naive) not in FULL_SIGS.values()


@pytest.mark.parametrize("position", [0, len(FULL_BODY) // 2, len(FULL_BODY) - 3])
def test_one_changed_byte_in_the_body_is_rejected(position: int) -> None:
    tampered = bytearray(FULL_BODY)
    # Change a digit or letter into another that keeps the JSON valid where possible.
    tampered[position] = ord("1") if tampered[position] != ord("1") else ord("2")
    try:
        result = verify_ipn_signature(bytes(tampered), FULL_SIGS["utf8-lists"], SECRET)
    except MalformedIpn:
        return  # broken JSON is rejected too, just with a different answer
    assert result is None


def test_changed_amount_digit_is_rejected() -> None:
    tampered = FULL_BODY.replace(b"0.0000635", b"0.0000636")
    assert verify_ipn_signature(tampered, FULL_SIGS["utf8-lists"], SECRET) is None


@pytest.mark.parametrize("index", [0, 64, 127])
def test_one_changed_character_in_the_signature_is_rejected(index: int) -> None:
    sig = FULL_SIGS["utf8-lists"]
    flipped = sig[:index] + ("0" if sig[index] != "0" else "1") + sig[index + 1 :]
    assert verify_ipn_signature(FULL_BODY, flipped, SECRET) is None


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_or_empty_header_is_rejected(header: str | None) -> None:
    assert verify_ipn_signature(PLAIN_BODY, header, SECRET) is None


def test_empty_secret_is_rejected_even_with_a_signature_made_with_it() -> None:
    empty_key_sig = hmac.new(b"", PLAIN_BODY, hashlib.sha512).hexdigest()
    assert verify_ipn_signature(PLAIN_BODY, empty_key_sig, "") is None
    assert verify_ipn_signature(PLAIN_BODY, PLAIN_SIG, "  \n") is None


def test_wrong_secret_is_rejected() -> None:
    assert verify_ipn_signature(PLAIN_BODY, PLAIN_SIG, SECRET + "x") is None


def test_secret_whitespace_and_header_case_are_tolerated() -> None:
    assert verify_ipn_signature(PLAIN_BODY, f"  {PLAIN_SIG.upper()}\n", f" {SECRET}\n") == (
        "utf8-lists"
    )


def test_non_ascii_header_is_rejected_without_error() -> None:
    assert verify_ipn_signature(PLAIN_BODY, "é" + PLAIN_SIG[1:], SECRET) is None


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1,2]", b'"text"', b"42", b'{"a":NaN}', b'{"a":1,"a":2}', b"\xff{}"],
)
def test_malformed_bodies_raise_malformed_ipn(body: bytes) -> None:
    with pytest.raises(MalformedIpn):
        verify_ipn_signature(body, PLAIN_SIG, SECRET)


def test_malformed_body_without_header_is_just_rejected() -> None:
    assert verify_ipn_signature(b"not json", None, SECRET) is None


def test_parse_keeps_number_tokens_verbatim() -> None:
    obj = parse_ipn_json(b'{"a":0.0000635,"b":1E-7,"c":5077125051,"d":-0.50,"e":[1.0]}')
    assert obj == {"a": "0.0000635", "b": "1E-7", "c": "5077125051", "d": "-0.50", "e": ["1.0"]}
    assert all(isinstance(v, RawNumber) for v in (obj["a"], obj["b"], obj["c"], obj["e"][0]))


def test_lone_surrogate_is_escaped_like_node() -> None:
    obj = parse_ipn_json(b'{"a":"\\ud800x"}')
    assert canonical_ipn_json(obj, ensure_ascii=False, arrays_as_objects=False) == (
        '{"a":"\\ud800x"}'
    )


def test_empty_array_becomes_empty_object_in_objects_variant() -> None:
    obj = parse_ipn_json(b'{"ids":[],"n":null,"t":true}')
    assert canonical_ipn_json(obj, ensure_ascii=False, arrays_as_objects=True) == (
        '{"ids":{},"n":null,"t":true}'
    )
    assert canonical_ipn_json(obj, ensure_ascii=True, arrays_as_objects=False) == (
        '{"ids":[],"n":null,"t":true}'
    )


def test_sign_ipn_matches_utf8_lists_and_accepts_bytes_str_or_object() -> None:
    assert sign_ipn(FULL_BODY, SECRET) == FULL_SIGS["utf8-lists"]
    assert sign_ipn(FULL_BODY.decode(), SECRET) == FULL_SIGS["utf8-lists"]
    assert sign_ipn(parse_ipn_json(FULL_BODY), f"{SECRET}\n") == FULL_SIGS["utf8-lists"]
    with pytest.raises(ValueError, match="secret"):
        sign_ipn(FULL_BODY, " ")


def test_dump_json_refuses_floats_and_writes_raw_numbers() -> None:
    assert dump_json({"b": RawNumber("0.0000635"), "a": 1}) == '{"b":0.0000635,"a":1}'
    with pytest.raises(TypeError):
        dump_json({"a": 0.5})
    with pytest.raises(TypeError):
        dump_json({"a": Decimal("0.5")})


# --- from parsed body to the normalised Ipn model ------------------------------------


def test_ipn_model_normalises_ids_amounts_currencies_and_time() -> None:
    ipn = Ipn.from_parsed(parse_ipn_json(FULL_BODY))
    assert ipn.payment_id == "5077125051"
    assert ipn.invoice_id == "4522625843"
    assert ipn.purchase_id == "6084744717"
    assert ipn.parent_payment_id is None
    assert ipn.payment_status == "finished"
    assert ipn.outcome_amount == Decimal("0.0000635")
    assert str(ipn.outcome_amount) == "0.0000635"
    assert ipn.price_amount == Decimal("19.99")
    assert ipn.actually_paid_at_fiat == Decimal("19.99")
    assert ipn.payment_extra_ids == ["5513339153", "5513339154"]
    assert ipn.fee is not None
    assert ipn.fee.service_fee == Decimal("0.0000012")
    assert ipn.updated_at == datetime(2025, 12, 11, 5, 48, 20, 123000, tzinfo=UTC)
    assert ipn.order_description == "Clé «Édition» 🎮"


def test_ipn_model_accepts_string_ids_amounts_and_iso_time() -> None:
    raw = (
        b'{"payment_id":"77","parent_payment_id":76,"payment_status":"PARTIALLY_PAID",'
        b'"price_currency":"EUR","actually_paid":"0.1","updated_at":"2026-01-02T03:04:05.678Z",'
        b'"payment_extra_ids":null,"unknown_field":{"x":1}}'
    )
    ipn = Ipn.from_parsed(parse_ipn_json(raw))
    assert (ipn.payment_id, ipn.parent_payment_id) == ("77", "76")
    assert ipn.payment_status == "partially_paid"
    assert ipn.price_currency == "eur"
    assert ipn.actually_paid == Decimal("0.1")
    assert ipn.payment_extra_ids == []
    assert ipn.updated_at == datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_ipn_model_takes_python_values_without_float_noise() -> None:
    ipn = Ipn.model_validate(
        {"payment_id": 5, "payment_status": "waiting", "pay_amount": 0.1, "price_amount": 3}
    )
    assert ipn.pay_amount == Decimal("0.1")
    assert ipn.price_amount == Decimal(3)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"payment_id":1,"payment_status":"paid"}',
        b'{"payment_status":"finished"}',
        b'{"payment_id":1.5,"payment_status":"finished"}',
        b'{"payment_id":1,"payment_status":"finished","actually_paid":"abc"}',
        b'{"payment_id":1,"payment_status":"finished","actually_paid":true}',
    ],
)
def test_ipn_model_rejects_unusable_bodies(raw: bytes) -> None:
    with pytest.raises(MalformedIpn) as info:
        Ipn.from_parsed(parse_ipn_json(raw))
    assert "abc" not in str(info.value)  # names fields, never echoes values
