"""The cashier in a real browser: Playwright drives Debian's Chromium (installed by .ci/run,
never by `playwright install`) on a phone-sized screen against the app served on loopback,
with the sandbox gateways mounted in it. Each test opens the bill link, reads the bill,
pays through a sandbox gateway and sees the bill paid; the screenshots go to artifacts/."""
from __future__ import annotations

import pytest
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect

from bot.sandbox.wechatpay_gateway import Delivery
from browser_support import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, needs_chromium
from cashier_support import LIMIT_FEN, SELF_PAY_FEN, start_cashier

PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True,
         "locale": "zh-CN"}
PAID_WITHIN_MS = 20_000  # the page looks again every 2 s; the notice comes within a second

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    needs_chromium,
]

# WCAG's contrast ratio of an element's text against its own background colour.
CONTRAST_JS = """element => {
    const luminance = rgb => {
        const [r, g, b] = rgb.match(/[0-9.]+/g).slice(0, 3).map(v => {
            v = v / 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
        });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const style = getComputedStyle(element);
    let background = style.backgroundColor;
    for (let e = element; background === "rgba(0, 0, 0, 0)" && e.parentElement; e = e.parentElement) {
        background = getComputedStyle(e.parentElement).backgroundColor;
    }
    if (background === "rgba(0, 0, 0, 0)") background = "rgb(255, 255, 255)";
    const [high, low] = [luminance(style.color), luminance(background)].sort((a, b) => b - a);
    return (high + 0.05) / (low + 0.05);
}"""


@pytest.fixture
async def browser_errors() -> list[str]:
    return []


@pytest.fixture
async def phone(browser_errors):
    """A fresh phone-sized page; what it logs as an error (a CSP refusal, a script error) goes to browser_errors."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = await (await browser.new_context(**PHONE)).new_page()
        page.on("console", lambda message: message.type == "error" and not _favicon(message)
                and browser_errors.append(f"{message.text} ({message.location.get('url')})"))
        page.on("pageerror", lambda error: browser_errors.append(str(error)))
        yield page
        await browser.close()


def _favicon(message: ConsoleMessage) -> bool:
    """The browser's own look for /favicon.ico on the sandbox gateway's page, which has no icon."""
    return message.location.get("url", "").endswith("/favicon.ico")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"cashier-{name}.png", full_page=True)


async def font_px(page: Page, selector: str) -> float:
    return await page.locator(selector).first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")


async def read_the_bill(page: Page, url: str) -> None:
    """What an old person must be able to read and find on the bill: checked as rendered."""
    await page.goto(url)
    await expect(page.locator(".due .amount")).to_have_text("¥55.50")
    await expect(page.get_by_text("血常规")).to_be_visible()
    await expect(page.locator(".totals")).to_contain_text("¥165.50")
    assert await font_px(page, "body") >= 20 and await font_px(page, ".items dd") >= 20
    assert await font_px(page, ".due .amount") >= 44
    for name in ("微信支付", "支付宝支付"):
        button = page.get_by_role("link", name=name, exact=True)
        await expect(button).to_be_visible()
        box = await button.bounding_box()
        assert box["height"] >= 60 and box["width"] >= 300, (name, box)
        assert await button.evaluate(CONTRAST_JS) >= 4.5, name
    assert await page.locator(".due .amount").evaluate(CONTRAST_JS) >= 7


async def test_a_bill_paid_with_sandbox_alipay_in_chromium(make_core, clock, aiohttp_server, phone, browser_errors):
    cashier = await start_cashier(await make_core(), clock, aiohttp_server)
    await read_the_bill(phone, cashier.url())
    await screenshot(phone, "bill")

    await phone.get_by_role("link", name="支付宝支付", exact=True).click()
    pay = phone.get_by_role("button", name="确认付款")  # the sandbox Alipay's own cashier
    await expect(pay).to_be_visible()
    await screenshot(phone, "alipay-sandbox")
    await pay.click()

    await expect(phone.locator(".paid")).to_have_text("✓ 账单已付清", timeout=PAID_WITHIN_MS)
    await expect(phone.get_by_role("link", name="支付宝支付")).to_have_count(0)
    await screenshot(phone, "paid-alipay")
    (out_trade_no,) = cashier.alipay.trades
    assert cashier.alipay.answers == [(out_trade_no, "success")]  # the signed notice, accepted once
    receipt = phone.get_by_role("region", name="付款凭证")  # the receipt, to show later
    for shown in (cashier.bill_no, "张伟", "¥55.50", "支付宝", cashier.alipay.trades[out_trade_no].trade_no):
        await expect(receipt).to_contain_text(shown)
    assert await cashier.bill() == ("paid", SELF_PAY_FEN, LIMIT_FEN)
    assert browser_errors == []


async def test_a_bill_paid_with_sandbox_wechat_pay_in_chromium(make_core, clock, aiohttp_server, phone, browser_errors):
    cashier = await start_cashier(await make_core(), clock, aiohttp_server)
    await read_the_bill(phone, cashier.url())

    await phone.get_by_role("link", name="微信支付", exact=True).click()  # through the silent OAuth and back
    confirm = phone.get_by_role("button", name="确认支付")
    await expect(confirm).to_be_visible()
    await expect(phone.locator(".due .amount")).to_have_text("¥55.50")
    await expect(phone.get_by_text("沙箱环境")).to_be_visible()
    await screenshot(phone, "wechat-confirm")
    await confirm.click()  # no WeixinJSBridge here: the sandbox gateway checks the paySign instead

    await expect(phone.locator(".paid")).to_have_text("✓ 账单已付清", timeout=PAID_WITHIN_MS)
    await screenshot(phone, "paid-wechat")
    (order,) = cashier.wechatpay.orders.values()
    assert cashier.wechatpay.deliveries == [Delivery(order.out_trade_no, 204)]
    assert await cashier.bill() == ("paid", SELF_PAY_FEN, LIMIT_FEN)
    assert browser_errors == []


async def test_the_bill_in_english_for_a_child_abroad(make_core, clock, aiohttp_server, phone, browser_errors):
    cashier = await start_cashier(await make_core(), clock, aiohttp_server)
    await phone.goto(cashier.url())
    await phone.get_by_role("link", name="English").click()
    await expect(phone.locator("html")).to_have_attribute("lang", "en")
    await expect(phone.locator(".due .amount")).to_have_text("CN¥55.50")
    await expect(phone.locator("a.button")).to_have_count(2)
    await screenshot(phone, "bill-en")
    assert browser_errors == []


async def test_the_sandbox_alipay_page_has_big_targets_and_a_way_back(make_core, clock, aiohttp_server, phone,
                                                                       browser_errors):
    cashier = await start_cashier(await make_core(), clock, aiohttp_server)
    await phone.goto(cashier.url())
    await phone.get_by_role("link", name="支付宝支付", exact=True).click()
    pay = phone.get_by_role("button", name="确认付款")
    back = phone.get_by_role("link", name="取消付款，返回商户")
    for target in (pay, back):
        box = await target.bounding_box()
        assert box["width"] >= 44 and box["height"] >= 44, box
    await back.click()
    await expect(phone.locator(".due .amount")).to_have_text("¥55.50")  # the cashier again, nothing paid
    assert await cashier.bill() == ("open", 0, LIMIT_FEN - SELF_PAY_FEN)
    assert browser_errors == []
