"""Shared by the browser tests: Debian's Chromium (installed by .ci/run, never by
`playwright install`), the flags it runs headless with on a closed network, the folder
the screenshots go to, and the `browser` fixture (import it by name)."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import async_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")


@pytest.fixture
async def browser():
    """Chromium, launched for one test."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()
