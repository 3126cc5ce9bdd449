"""Kinguin's Product object is read tolerantly where it tells the customer about the key: a
malformed fact is dropped, never the product (its stock and price still count)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bitloot.kinguin.models import Product


def product(**fields: Any) -> Product:
    base = {"kinguinId": 1, "productId": "p1", "name": "Game", "price": "9.99", "qty": 3}
    return Product.model_validate(base | fields)


def test_a_product_without_any_fact_parses() -> None:
    parsed = product()
    assert parsed.platform is None and parsed.regional_limitations is None
    assert parsed.country_limitation == [] and parsed.cover_url is None
    assert parsed.is_preorder is None and parsed.release_date is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["GB", "CH"], ["GB", "CH"]),
        (["gb", " ch ", "GB"], ["GB", "CH"]),  # upper case, trimmed, each once
        (["GBR", "1A", "", "Ä Ö", "ÄÖ", 44, None, {"code": "DE"}], []),
        (None, []),
        ("GB,CH", []),
        ({"GB": True}, []),
    ],
)
def test_country_limitation_keeps_only_two_letter_codes(raw: Any, expected: list[str]) -> None:
    assert product(countryLimitation=raw).country_limitation == expected


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        ({"cover": {"url": "https://c/u.jpg", "thumbnail": "https://c/t.jpg"}}, "https://c/u.jpg"),
        ({"cover": {"url": "", "thumbnail": "https://c/t.jpg"}}, "https://c/t.jpg"),
        ({"cover": {"url": 7, "thumbnail": None}}, None),
        ({"cover": "https://c/u.jpg"}, None),
        ({"screenshots": [{"url": "https://c/s.jpg"}]}, None),
        (["https://c/u.jpg"], None),
        ("https://c/u.jpg", None),
        (None, None),
    ],
)
def test_the_cover_comes_from_images_in_any_shape_without_failing(
    images: Any, expected: str | None
) -> None:
    assert product(images=images).cover_url == expected


def test_the_older_cover_fields_are_used_when_images_has_no_cover() -> None:
    older = product(coverImage="https://c/thumb.jpg", coverImageOriginal="https://c/full.jpg")
    assert older.cover_url == "https://c/full.jpg"
    assert product(coverImage="https://c/thumb.jpg").cover_url == "https://c/thumb.jpg"
    both = product(images={"cover": {"url": "https://c/new.jpg"}}, coverImage="https://c/old.jpg")
    assert both.cover_url == "https://c/new.jpg"


def test_facts_of_another_type_are_read_as_not_said() -> None:
    odd = product(
        platform=["Steam"],
        regionalLimitations=3,
        isPreorder="yes",
        releaseDate={"date": "2027-03-01"},
    )
    assert (odd.platform, odd.regional_limitations, odd.is_preorder, odd.release_date) == (
        None,
        None,
        None,
        None,
    )
    assert (odd.price, odd.qty) == (Decimal("9.99"), 3)  # the product itself still counts
