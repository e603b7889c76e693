"""The sandbox insurer in Chromium, on `xinyi serve`'s own sandbox app: after `xinyi sweep --now`
past a Beijing bill's due time, the chat simulator's page lists `advance_requested` beside the
phone, and the SMS the sandbox kept, under the persona whose phone they went to. The screenshot
goes to artifacts/insurer-advance.png."""
from __future__ import annotations

import pytest
from playwright.async_api import expect

from bot.hospital_api import CORE
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)
from test_sandbox_insurer import a_beijing_bill, sandbox, sweep_past_due  # noqa: F401 (sandbox: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]
SHOWN_MS = 15_000  # the page asks the insurer every 2 s


async def test_the_console_shows_the_insurer_advance_after_a_sweep_past_due(sandbox, browser):
    app, client = sandbox
    core = app[CORE]
    bill = await a_beijing_bill(core)
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    await page.goto(str(client.make_url("/sandbox/")))
    events = page.locator("#insurer-events")
    await expect(events.locator('[data-event="bill_issued"]')).to_contain_text(bill["bill_no"], timeout=SHOWN_MS)
    await sweep_past_due(core)
    advance = events.locator('[data-event="advance_requested"]')
    await expect(advance).to_contain_text(bill["bill_no"], timeout=SHOWN_MS)
    await expect(advance).to_contain_text("unpaid_fen=10000")
    await expect(events).not_to_contain_text("110105198503120012")
    texts = page.locator("#sms-messages")  # 张伟 has no WeChat: his enrolment and bill go by SMS
    await expect(texts.locator('[data-template="status_enrolled"]')).to_contain_text("张伟 138****8001", timeout=SHOWN_MS)
    await expect(texts).not_to_contain_text("13800138001")
    ARTIFACTS.mkdir(exist_ok=True)
    await advance.scroll_into_view_if_needed()
    await page.screenshot(path=str(ARTIFACTS / "insurer-advance.png"), full_page=True)
    await page.close()
