"""The sandbox console's pages in Chromium, as a new user met them: the hospital panel's forms
after a mistake and after a refusal of the API, an order cancelled only when confirmed, a
family member served on the payer's line, and the pages on narrow phones. The app is the
console's own (the demo programme, `/wechat`, the hospital API) served on loopback."""
from __future__ import annotations

import pytest
from aiohttp.test_utils import unused_port
from playwright.async_api import Page, expect

from billing.demo import seed_demo
from billing.members import bind_dependent, enrol
from bot.app import build_app
from bot.sandbox import console
from bot.wechat_api import WeChatAccount, WeChatApi
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

SON_ID, MOTHER_ID = "11010819920709006X", "110108195203040075"
ANSWER_MS = 10_000
WIDE = """() => [...document.querySelectorAll("body *")].filter(e => e.getBoundingClientRect().right > innerWidth + 0.5)
    .slice(0, 8).map(e => e.tagName + "." + e.className + "#" + e.id + " " + Math.round(e.getBoundingClientRect().right))"""


@pytest.fixture
async def served(make_core, aiohttp_server):
    """(base URL, core): the console on the demo programme; the son 刘洋 enrolled, his mother bound."""
    port = unused_port()
    core = await make_core(hospital=None)
    core.public_url = base = f"http://127.0.0.1:{port}"
    await seed_demo(core)
    app = build_app(core, background=False, wechat=WeChatApi(core.db, WeChatAccount.sandbox(base), clock=core.clock))
    console.setup(app)
    await aiohttp_server(app, port=port)
    son = await enrol(core, openid="o-demo-relative", name="刘洋", id_number=SON_ID, phone="13800138002",
                      consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    await bind_dependent(core, son.member_id, "parent", "刘桂兰", MOTHER_ID)
    return base, core


async def page_of(browser, width: int = 1280, height: int = 900) -> tuple[Page, list[str]]:
    context = await browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN",
                                        timezone_id="America/New_York")  # not China: the pages must say China time
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return page, errors


async def open_visit(page: Page, base: str, who: str) -> None:
    await page.goto(f"{base}/sandbox/hospital")
    await page.get_by_role("button", name=who, exact=True).click()
    await expect(page.locator("#new-visit")).to_be_visible()


async def test_a_mistake_is_forgotten_once_corrected_and_refusals_show_by_the_form(served, browser):
    base, core = served
    page, errors = await page_of(browser)
    await open_visit(page, base, "刘洋")

    visit_no = page.get_by_label("就诊号")
    await visit_no.fill("V 1!")
    await page.get_by_role("button", name="开始就诊").click()
    assert await visit_no.evaluate("e => e.validationMessage") == "就诊号和单号只能用字母、数字和 -"
    await visit_no.fill("V1")
    await page.get_by_role("button", name="开始就诊").click()
    visit = page.locator(".visit")
    await expect(visit).to_have_count(1, timeout=ANSWER_MS)

    amount = visit.get_by_label("金额（元）")
    await visit.get_by_label("项目", exact=True).fill("血常规")
    await amount.fill("abc")
    await visit.get_by_role("button", name="记账", exact=True).click()
    assert await amount.evaluate("e => e.validationMessage") == "金额要是元，最多两位小数，比如 35.50"
    await amount.fill("35")
    await visit.get_by_role("button", name="记账", exact=True).click()
    await expect(page.locator(".visit table.charges tr")).to_have_count(2, timeout=ANSWER_MS)

    # Over the line: the 402 is said next to the form, with what is left, and the form keeps its text.
    visit = page.locator(".visit")
    await visit.get_by_label("项目", exact=True).fill("手术")
    await visit.get_by_label("金额（元）").fill("5000")
    await visit.get_by_role("button", name="记账", exact=True).click()
    alert = visit.get_by_role("alert")
    await expect(alert).to_be_visible(timeout=ANSWER_MS)
    await expect(alert).to_contain_text("超出额度，没有记账：还能记 ¥1,965.00")
    await expect(visit.get_by_label("金额（元）")).to_have_value("5000")
    # And a valid amount after the refusal goes through.
    await visit.get_by_label("金额（元）").fill("100")
    await visit.get_by_role("button", name="记账", exact=True).click()
    await expect(page.locator(".visit table.charges tr")).to_have_count(3, timeout=ANSWER_MS)
    assert errors == []


async def test_an_order_is_cancelled_only_when_confirmed(served, browser):
    base, core = served
    page, errors = await page_of(browser)
    await open_visit(page, base, "刘洋")
    await page.get_by_label("就诊号").fill("V2")
    await page.get_by_role("button", name="开始就诊").click()
    await page.get_by_role("button", name="血常规 ¥35.00").click()
    await page.get_by_role("button", name="记账", exact=True).click()
    row = page.locator(".visit table.charges tr", has_text="血常规")
    await expect(row).to_contain_text("已记账", timeout=ANSWER_MS)

    asked: list[str] = []

    async def dismiss(dialog):
        asked.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await page.get_by_role("button", name="撤销 血常规").click()
    await page.wait_for_timeout(500)
    assert asked == ["撤销“血常规”（¥35.00）？撤销后这一项不再记账。"]
    await expect(row).to_contain_text("已记账")
    assert await page.locator(".log-entry h4", has_text="/cancel").count() == 0  # nothing was sent

    async def accept(dialog):
        await dialog.accept()

    page.once("dialog", accept)
    await page.get_by_role("button", name="撤销 血常规").click()
    await expect(row).to_contain_text("已撤销", timeout=ANSWER_MS)
    assert errors == []


async def test_a_family_member_shows_as_served_on_the_payer_s_line(served, browser):
    base, core = served
    page, errors = await page_of(browser)
    await open_visit(page, base, "刘桂兰")
    box = page.locator("#patient")
    await expect(box).to_contain_text("已被家人添加：看病记在刘洋的额度上")
    await expect(box).to_contain_text("可用额度 ¥2,000.00")
    await expect(box).not_to_contain_text("未开通")
    assert errors == []


@pytest.mark.parametrize("width", [320, 390])
async def test_the_pages_fit_a_narrow_phone(served, browser, width):
    base, core = served
    page, errors = await page_of(browser, width, 740)
    await page.goto(f"{base}/sandbox/")
    personas = await page.locator("#personas").bounding_box()
    phone = await page.locator(".phone").bounding_box()
    assert personas["y"] < phone["y"] + phone["height"] / 2, (personas, phone)  # above or beside, not 900 px below
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= width, await page.evaluate(WIDE)
    await open_visit(page, base, "刘洋")
    await page.get_by_label("就诊号").fill("V3")
    await page.get_by_role("button", name="开始就诊").click()
    await expect(page.locator(".visit")).to_have_count(1, timeout=ANSWER_MS)
    await page.get_by_role("button", name="奥美拉唑肠溶胶囊 ¥42.50").click()
    await page.get_by_role("button", name="记账", exact=True).click()
    await expect(page.locator(".visit table.charges tr")).to_have_count(2, timeout=ANSWER_MS)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"panel-{width}.png", full_page=True)
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= width, await page.evaluate(WIDE)
    assert errors == []


async def test_the_chat_shows_china_time_wherever_the_browser_is(served, browser):
    base, core = served
    page, errors = await page_of(browser)  # a browser in New York, 04:00 there
    await page.goto(f"{base}/sandbox/")
    await page.locator(".wx-profile").get_by_role("button", name="关注公众号").click()
    await expect(page.locator(".wx-row.account").first).to_be_visible(timeout=ANSWER_MS)
    await expect(page.locator(".wx-time").first).to_have_text("17:00")  # 09:00 UTC, as the bot says it
    assert errors == []
