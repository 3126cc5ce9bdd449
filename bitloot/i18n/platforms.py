"""Where a key is activated and where it works: what the key page and every email say.

Kinguin names the platform in free text (`Steam`, `GOG COM`, `XBOX ONE`, `Xbox Series X|S`,
`PlayStation 5`, `Nintendo Switch`, `EA App`, `Origin`, `Ubisoft Connect`, `Uplay`,
`Battle.net`, `Epic Games`, `Other`, ...). It is matched, case-insensitively, to one of the
platforms below, each with short activation steps and the platform's own redeem page where
one exists; anything else gets the generic steps. Steps are English message ids in the
`common` domain (translated in `messages/common-<locale>.po`).

Redeem links are the platforms' own pages, checked by hand when written (2026-12). Ubisoft
and the generic fallback have none: Ubisoft activates keys only inside Ubisoft Connect.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitloot.i18n import N_, country_names, gettext


@dataclass(frozen=True, slots=True)
class Platform:
    """One platform's activation facts; `name` is shown as is (a brand, not translated)."""

    code: str
    name: str
    redeem_url: str | None
    steps: tuple[str, ...]


def _p(code: str, name: str, url: str | None, *steps: str) -> Platform:
    return Platform(code, name, url, steps)


PLATFORMS: tuple[Platform, ...] = (
    _p(
        "steam",
        "Steam",
        "https://store.steampowered.com/account/registerkey",
        N_("Open Steam and sign in."),
        N_("Choose Games, then Activate a Product on Steam."),
        N_("Enter your key and follow the steps; the game appears in your library."),
    ),
    _p(
        "epic",
        "Epic Games",
        "https://store.epicgames.com/redeem",
        N_("Sign in to your Epic Games account."),
        N_("Open the redeem page, enter your key and confirm."),
    ),
    _p(
        "gog",
        "GOG",
        "https://www.gog.com/redeem",
        N_("Sign in to GOG.com."),
        N_("Open the redeem page, enter your key and confirm."),
    ),
    _p(
        "xbox",
        "Xbox",
        "https://redeem.microsoft.com",
        N_("Sign in with the Microsoft account you play with."),
        N_("Open the redeem page (or Store > Redeem on your console) and enter your key."),
    ),
    _p(
        "playstation",
        "PlayStation",
        "https://store.playstation.com/redeem",
        N_("Sign in to the PlayStation Store with the account of your console."),
        N_("Choose Redeem Code and enter your key."),
    ),
    _p(
        "nintendo",
        "Nintendo",
        "https://ec.nintendo.com/redeem",
        N_("On your console open Nintendo eShop, or open the redeem page and sign in."),
        N_("Choose Redeem Code and enter your key."),
    ),
    _p(
        "ea",
        "EA app",
        "https://www.ea.com/redeem",
        N_("Open the EA app and sign in."),
        N_("Open the menu, choose Redeem code and enter your key."),
    ),
    _p(
        "ubisoft",
        "Ubisoft Connect",
        None,
        N_("Open Ubisoft Connect on your computer and sign in."),
        N_("Open the menu, choose Activate product and enter your key."),
    ),
    _p(
        "battlenet",
        "Battle.net",
        "https://account.battle.net/codes",
        N_("Sign in to your Battle.net account."),
        N_("Open the redeem page (or Redeem a Code in the Battle.net app) and enter your key."),
    ),
)
GENERIC = _p(
    "other",
    "",
    None,
    N_("Follow the instructions that come with your key, on the platform it is for."),
    N_("If the key does not work, contact us with your order number and we will help."),
)

# Matched in this order, on the lower-cased Kinguin platform text.
_MATCHES: tuple[tuple[str, str], ...] = (
    ("steam", "steam"),
    ("epic", "epic"),
    ("gog", "gog"),
    ("xbox", "xbox"),
    ("microsoft", "xbox"),
    ("playstation", "playstation"),
    ("psn", "playstation"),
    ("nintendo", "nintendo"),
    ("switch", "nintendo"),
    ("origin", "ea"),
    ("ea app", "ea"),
    ("ea play", "ea"),
    ("ubisoft", "ubisoft"),
    ("uplay", "ubisoft"),
    ("battle.net", "battlenet"),
    ("battlenet", "battlenet"),
    ("blizzard", "battlenet"),
)
_BY_CODE = {p.code: p for p in PLATFORMS}


def platform_of(kinguin_platform: str | None) -> Platform:
    """The platform Kinguin's text names (the generic one when none matches)."""
    text = (kinguin_platform or "").strip().lower()
    for needle, code in _MATCHES:
        if needle in text:
            return _BY_CODE[code]
    return GENERIC


def platform_label(kinguin_platform: str | None) -> str:
    """The platform as Kinguin wrote it (`Xbox Series X|S`), empty when unknown or Other."""
    text = (kinguin_platform or "").strip()
    return "" if text.lower() in ("", "other") else text


# Kinguin's usual regionalLimitations values, said in words; any other is shown as written.
_REGIONS = {
    "region free": N_("Works worldwide (region free)."),
    "global": N_("Works worldwide (region free)."),
    "worldwide": N_("Works worldwide (region free)."),
    "europe": N_("Works in Europe."),
    "eu": N_("Works in Europe."),
    "emea": N_("Works in Europe, the Middle East and Africa."),
    "north america": N_("Works in North America."),
    "united states": N_("Works in the United States."),
    "us": N_("Works in the United States."),
    "united kingdom": N_("Works in the United Kingdom."),
    "uk": N_("Works in the United Kingdom."),
    "latam": N_("Works in Latin America."),
    "asia": N_("Works in Asia."),
    "row": N_("Works outside Europe and North America (rest of the world)."),
    "rest of the world": N_("Works outside Europe and North America (rest of the world)."),
}
_REGION_AS_WRITTEN = N_("Works in this region: {region}.")
_EXCLUDED = N_("Will not activate in: {countries}.")
_REGION_UNKNOWN = N_("Check the product page for where this key works.")


def region_text(regional_limitations: str | None, locale: str) -> str:
    """Where the key works, in a sentence in `locale`."""
    text = (regional_limitations or "").strip()
    if not text:
        return gettext(locale, _REGION_UNKNOWN)
    known = _REGIONS.get(text.lower())
    if known is not None:
        return gettext(locale, known)
    return gettext(locale, _REGION_AS_WRITTEN).format(region=text)


def excluded_text(excluded_countries: list[str] | tuple[str, ...], locale: str) -> str:
    """Where the key will not activate, in a sentence in `locale`; empty when nowhere."""
    if not excluded_countries:
        return ""
    names = ", ".join(country_names(excluded_countries, locale))
    return gettext(locale, _EXCLUDED).format(countries=names)


def steps(platform: Platform, locale: str) -> list[str]:
    """The platform's activation steps in `locale`."""
    return [gettext(locale, step) for step in platform.steps]
