"""Headless Chromium for the browser tests (Debian's `chromium`, driven by Playwright).

Nothing is downloaded at run time: Playwright's Python wheel carries its driver and is
pointed at the system Chromium. Importing this module skips the importing test module,
saying what to install, when either is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from typing import Any

import pytest

CHROMIUM = (
    os.environ.get("BITLOOT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
TIMEOUT_MS = 30_000

playwright_api = pytest.importorskip(
    "playwright.async_api",
    reason="Playwright is not installed: `.venv/bin/pip install playwright` (dev extra); "
    "never `playwright install`, the tests use the system Chromium",
)
if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: run `sudo scripts/install-test-packages.sh` "
        "(Debian packages chromium and chromium-driver)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module", name="browser")
async def chromium_browser() -> AsyncIterator[Any]:
    """`browser`: one headless Chromium per test module (import `chromium_browser` to use it)."""
    async with playwright_api.async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        await launched.close()
