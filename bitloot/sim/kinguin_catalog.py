"""Kinguin simulator: the seeded catalogue and the generation of keys (text and images).

The seeded product ids are stable so the demo and tests can put them in our own catalogue.
"""

from __future__ import annotations

import base64
import random
import string
import struct
import zlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

ImageType = str  # "image/jpeg" or "image/png"

# A real 8x8 baseline JPEG (made once with ImageMagick); each key gets its own COM segment.
_JPEG_TEMPLATE = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA0JCgsKCA0LCgsODg0PEyAVExISEyccHhcgLikxMC4pLSwzOko+MzZG"
    "NywtQFdBRkxOUlNSMj5aYVpQYEpRUk//2wBDAQ4ODhMREyYVFSZPNS01T09PT09PT09PT09PT09PT09PT09PT09P"
    "T09PT09PT09PT09PT09PT09PT09PT09PT0//wAARCAAIAAgDAREAAhEBAxEB/8QAFAABAAAAAAAAAAAAAAAAAAAA"
    "Bf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/xAAVAQEBAAAAAAAAAAAAAAAAAAAFBv/EABQRAQAAAAAAAAAAAAAAAAAA"
    "AAD/2gAMAwEAAhEDEQA/ADVEMf/Z"
)


@dataclass
class SimOffer:
    """A merchant offer: `qty` keys in stock, `text_qty` of them text, the rest images."""

    offer_id: str
    price: Decimal
    qty: int
    text_qty: int
    merchant_name: str = "Sim Merchant"
    image_types: tuple[ImageType, ...] = ("image/png", "image/jpeg")
    wholesale: bool = False


@dataclass
class SimProduct:
    """A product and its offers, and what Kinguin says about the key: the platform, where
    it works (`regionalLimitations`, `countryLimitation`: where it will not activate), the
    cover image, the pre-order facts. They are sent as given, unchecked, so a test can
    make Kinguin say something malformed; `raw_images`, when set, is sent as `images`
    instead of the cover built from `image_url`."""

    product_id: str
    kinguin_id: int
    name: str
    platform: str | None = "Steam"
    offers: list[SimOffer] = field(default_factory=list)
    reads: int = 0  # GET /v2/products (or v1) answers about it, sold-out 404s included
    regional_limitations: str | None = "REGION FREE"
    country_limitation: list[Any] | None = field(default_factory=list)
    image_url: str | None = None
    is_preorder: bool = False
    release_date: str | None = None
    raw_images: Any = None

    def offers_in_stock(self) -> list[SimOffer]:
        """Offers that still have keys."""
        return [o for o in self.offers if o.qty > 0]


# Cover images under a reserved domain (RFC 2606): shown, never fetched from a real host.
IMAGES = "https://images.kinguin-sim.example/covers"

# Stable ids for the demo and tests (24-hex like the real productIds).
TEXT_PRODUCT_ID = "5c9b5f6b2539a4e8f172916a"
MIXED_PRODUCT_ID = "5c9b68662539a4e8f17ae2fe"
IMAGE_PRODUCT_ID = "5f3c7a1b2539a4e8f1a0c0de"
CHEAP_PRODUCT_ID = "6001a2b3c4d5e6f708192a3b"
SOLD_OUT_PRODUCT_ID = "60aa0bb1cc2dd3ee4ff55667"


def seed_products() -> list[SimProduct]:
    """A fresh copy of the seeded catalogue (prices in EUR)."""
    d = Decimal
    return [
        SimProduct(
            TEXT_PRODUCT_ID,
            10001,
            "Stardew Valley Steam CD Key",
            offers=[
                SimOffer("61a0000000000000000000a1", d("9.49"), 500, 500),
                SimOffer("61a0000000000000000000a2", d("10.99"), 200, 200, "Other Merchant"),
            ],
            image_url=f"{IMAGES}/stardew-valley.jpg",
            release_date="2016-02-26",
        ),
        SimProduct(
            MIXED_PRODUCT_ID,
            10002,
            "Cyberpunk 2077 GOG CD Key",
            platform="GOG COM",
            offers=[
                SimOffer("61a0000000000000000000b1", d("12.90"), 300, 150),
                SimOffer("61a0000000000000000000b2", d("13.50"), 100, 100, "Other Merchant"),
            ],
            regional_limitations="EUROPE",
            country_limitation=["CH", "GB", "NO"],
            image_url=f"{IMAGES}/cyberpunk-2077.jpg",
            release_date="2020-12-10",
        ),
        SimProduct(
            IMAGE_PRODUCT_ID,
            10003,
            "Minecraft Java Edition Gift Card (image key)",
            platform="Other",
            offers=[SimOffer("61a0000000000000000000c1", d("19.99"), 100, 0)],
        ),  # no image, no release date: the generic case
        SimProduct(
            CHEAP_PRODUCT_ID,
            10004,
            "Indie Bundle Steam CD Key",
            offers=[
                SimOffer("61a0000000000000000000d1", d("1.99"), 1000, 1000, wholesale=True),
            ],
            regional_limitations="GLOBAL",
            # A cover with only a thumbnail, as some of Kinguin's products have.
            raw_images={"cover": {"thumbnail": f"{IMAGES}/indie-bundle_thumb.jpg"}},
            release_date="2019-05-01",
        ),
        SimProduct(
            SOLD_OUT_PRODUCT_ID,
            10005,
            "Sold Out Game Steam CD Key",
            offers=[SimOffer("61a0000000000000000000e1", d("4.99"), 0, 0)],
        ),
    ]


class KeyFactory:
    """Deterministic ids and serials from one seeded generator (not for security)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def hex_id(self, length: int = 24) -> str:
        """A lower-case hex id like Kinguin's key and offer ids."""
        return "".join(self._rng.choice("0123456789abcdef") for _ in range(length))

    def order_id(self) -> str:
        """An order id like `PHS84FJAG5U`."""
        alphabet = string.ascii_uppercase + string.digits
        return "".join(self._rng.choice(alphabet) for _ in range(11))

    def text_serial(self) -> str:
        """A text key like `ABCDE-FGHIJ-KLMNO`."""
        alphabet = string.ascii_uppercase + string.digits
        groups = ("".join(self._rng.choice(alphabet) for _ in range(5)) for _ in range(3))
        return "-".join(groups)

    def image_serial(self, image_type: ImageType) -> str:
        """Base64 of a small real image, unique per key."""
        data = self._jpeg() if image_type == "image/jpeg" else self._png()
        return base64.b64encode(data).decode("ascii")

    def _png(self, size: int = 8) -> bytes:
        pixel = bytes(self._rng.randrange(256) for _ in range(3))
        rows = b"".join(b"\x00" + pixel * size for _ in range(size))

        def chunk(tag: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(tag + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

        header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b"")
        )

    def _jpeg(self) -> bytes:
        comment = self.hex_id(32).encode("ascii")
        segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
        return _JPEG_TEMPLATE[:2] + segment + _JPEG_TEMPLATE[2:]
