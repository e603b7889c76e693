"""The commitment page in a real browser on the narrowest phone (320 px): nothing runs off the
side, the type is large, and no script or style is refused. Screenshots go to artifacts/."""
from __future__ import annotations

import pytest

from bot.app import build_app
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]


@pytest.mark.parametrize("lang", ["zh_Hans", "zh_Hant", "en"])
async def test_the_commitment_reads_at_phone_width(browser, aiohttp_server, make_core, lang):
    server = await aiohttp_server(build_app(await make_core("xiamen"), background=False))
    page = await (await browser.new_context(viewport={"width": 320, "height": 640}, is_mobile=True)).new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and "favicon" not in message.text
            and errors.append(message.text))
    response = await page.goto(str(server.make_url(f"/documents/commitment?lang={lang}")))
    assert response.status == 200
    assert await page.evaluate("document.documentElement.scrollWidth") <= 320
    font_px = await page.evaluate("parseFloat(getComputedStyle(document.querySelector('.document p')).fontSize)")
    assert font_px >= 20
    assert await page.locator(".document p").count() >= 5
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"document-320-{lang}.png"), full_page=True)
    assert errors == []
