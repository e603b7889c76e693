"""The whole story of the README's first command, in Chromium, on `xinyi serve`'s own app
(bot.server.make_app in sandbox mode, served on loopback): a son enrols in the chat
simulator, adds his mother and books for her; the hospital panel checks her in, posts three
orders, cancels one and checks out with the insurance split; the bill notice arrives in the
son's chat as a template card; he opens it and pays with the sandbox Alipay; 额度 shows the
line whole again. A screenshot of every step goes to artifacts/story-*.png."""
from __future__ import annotations

import re
from functools import partial

import pytest
from aiohttp.test_utils import unused_port
from playwright.async_api import Page, expect

from bot.config import Settings
from bot.server import make_app
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

# A desktop, and the narrowest phone in use: the story holds on both (screenshots story-NN-* and story-320-NN-*).
SCREENS = {"": {"width": 1280, "height": 900}, "320-": {"width": 320, "height": 640}}
REPLY_MS = 10_000
NOTICE_MS = 20_000  # the sandbox sweeps every 2 s and sends the bill notice
PAID_MS = 30_000


@pytest.fixture
async def served(tmp_path, aiohttp_server) -> str:
    """The sandbox app exactly as `xinyi serve` builds it, on a free loopback port; its base URL."""
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings(secret_key="story-secret-key-0123456789abcdef", sandbox=True, public_url=base, port=port,
                        database_url=f"sqlite+inline:///{tmp_path / 'xinyi.db'}", data_dir=tmp_path)
    await aiohttp_server(await make_app(settings), port=port)
    return base


class Phone:
    """The simulator's phone, driven as a person would: the menu, the keyboard, 填入."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.replies = page.locator(".wx-row.account")

    async def menu(self, top: str, item: str) -> None:
        if await self.page.locator("#menu-bar").is_hidden():
            await self.page.get_by_role("button", name="切换到菜单").click()
        await self.page.get_by_role("button", name=top, exact=True).click()
        await self.page.get_by_role("menuitem", name=item, exact=True).click()

    async def say(self, text: str) -> None:
        if await self.page.locator("#input-bar").is_hidden():
            await self.page.get_by_role("button", name="切换到键盘").click()
        await self.page.locator("#text").fill(text)
        await self.page.get_by_role("button", name="发送").click()

    async def say_and_wait(self, text: str) -> None:
        """Send, then wait for a new reply: a check on the last reply must not read the one before."""
        before = await self.replies.count()
        await self.say(text)
        await expect(self.replies.nth(before)).to_be_attached(timeout=REPLY_MS)

    async def fill_in(self, label: str) -> None:
        """The console's 填入 for one of the persona's papers, then 发送."""
        await self.page.get_by_role("button", name=f"填入 {label}", exact=True).click()
        await self.page.get_by_role("button", name="发送").click()

    async def answered(self, words: str) -> None:
        await expect(self.replies.last).to_contain_text(words, timeout=REPLY_MS)

    async def last_reply(self) -> str:
        return await self.replies.last.inner_text()


async def shot(page: Page, number: int, name: str, *, screen: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"story-{screen}{number:02d}-{name}.png", full_page=full_page)


@pytest.mark.parametrize("screen", SCREENS)
async def test_the_whole_story_in_a_browser(served, browser, screen):
    context = await browser.new_context(viewport=SCREENS[screen], locale="zh-CN", timezone_id="Asia/Shanghai")
    snap = partial(shot, screen=screen)
    errors: list[str] = []

    def watch(page: Page) -> None:
        page.on("console", lambda message: message.type == "error" and errors.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))

    context.on("page", watch)
    chat = await context.new_page()
    await chat.goto(f"{served}/sandbox/")
    phone = Phone(chat)

    # The son, Liu Yang, follows the account and enrols: consent, name, ID number, phone, commitment.
    await chat.get_by_role("button", name=re.compile("刘洋")).click()
    await expect(chat.locator("#owner")).to_have_text("刘洋的手机")
    await snap(chat, 1, "the-simulator")
    await chat.locator(".wx-profile").get_by_role("button", name="关注公众号").click()
    await phone.answered("欢迎关注信医")
    await phone.menu("信用就医", "开通")
    await phone.answered("隐私说明")
    await snap(chat, 2, "enrol-consent")
    await phone.say("同意")
    await phone.answered("姓名")
    await phone.fill_in("姓名")
    await phone.answered("身份证号")
    await phone.fill_in("身份证号")
    await phone.answered("手机号")
    await phone.fill_in("手机号")
    await phone.answered("承诺书")
    await phone.say("同意")
    await phone.answered("开通成功！您的信用额度是 ¥2,000.00")
    await snap(chat, 3, "enrolled")

    # He adds his mother, Liu Guilan, and books 消化内科 for her by saying what hurts.
    await phone.menu("我的", "家人")
    await phone.answered("添加家人")
    await phone.say("1")
    await phone.answered("什么人")
    await phone.fill_in("家人称呼")
    await phone.answered("姓名")
    await phone.fill_in("家人姓名")
    await phone.answered("身份证号")
    await phone.fill_in("家人身份证号")
    await phone.answered("添加 刘桂兰")
    await phone.say("1")
    await phone.answered("已添加 刘桂兰")
    await snap(chat, 4, "mother-added")
    await phone.menu("挂号缴费", "挂号")
    await phone.answered("给谁挂号")
    await phone.say("2")
    await phone.answered("挂哪个科")
    await phone.say("肚子疼")
    await phone.answered("哪天去")
    while "请确认" not in await phone.last_reply():  # the day, then the doctor when there is a choice
        await phone.say_and_wait("1")
        await expect(phone.replies.last).to_contain_text(re.compile("选医生|请确认"), timeout=REPLY_MS)
    await phone.say("1")
    await phone.answered("挂号成功")
    await expect(phone.replies.last).to_contain_text("消化内科 陈志强")
    await snap(chat, 5, "booked")

    # The hospital: her ID number finds the booked visit; check in, three orders, one cancelled, checkout.
    panel = await context.new_page()
    await panel.goto(f"{served}/sandbox/hospital")
    await panel.get_by_role("button", name="刘桂兰").click()
    visit = panel.locator(".visit")
    await expect(visit).to_have_count(1)
    await expect(visit).to_contain_text("信用就医")
    await expect(visit).to_contain_text("挂号费 消化内科 陈志强")
    await visit.get_by_role("button", name="接诊").click()
    await expect(panel.locator(".log-entry h4").first).to_contain_text("POST /api/v1/visits → 答复 HTTP 201")
    for order in ("血常规 ¥35.00", "腹部B超 ¥180.00", "胃镜检查 ¥600.00"):
        rows = await panel.locator(".visit table.charges tr").count()
        await panel.get_by_role("button", name=order).click()
        await panel.get_by_role("button", name="记账", exact=True).click()
        await expect(panel.locator(".visit table.charges tr")).to_have_count(rows + 1)
    await snap(panel, 6, "hospital-orders", full_page=True)
    panel.once("dialog", lambda dialog: dialog.accept())  # 撤销 asks first
    await panel.get_by_role("button", name="撤销 胃镜检查").click()
    await expect(panel.locator(".visit table.charges tr", has_text="胃镜检查")).to_contain_text("已撤销")
    await panel.get_by_role("button", name="按医保报销 70% 填入").click()
    await expect(panel.get_by_label("血常规 自付")).to_have_value("10.50")
    await snap(panel, 7, "hospital-split", full_page=True)
    await panel.get_by_role("button", name="结账", exact=True).click()
    await expect(panel.locator(".visit .bill")).to_contain_text("自付 ¥82.50", timeout=REPLY_MS)
    await expect(panel.locator(".log-entry .answer").first).to_contain_text('"self_pay_fen": 8250')
    await snap(panel, 8, "hospital-checked-out", full_page=True)

    # The bill notice reaches the son's chat as a template card; he pays from its link.
    await chat.bring_to_front()
    card = chat.locator(".wx-card")
    await expect(card).to_contain_text("刘桂兰的就诊账单已出，请按时付款。", timeout=NOTICE_MS)
    await expect(card).to_contain_text("¥82.50")
    await snap(chat, 9, "bill-notice")
    async with context.expect_page() as opened:
        await card.get_by_role("link", name="详情").click()
    cashier = await opened.value
    await expect(cashier.locator(".due .amount")).to_have_text("¥82.50")
    await snap(cashier, 10, "cashier")
    await cashier.get_by_role("link", name="支付宝支付", exact=True).click()
    await cashier.get_by_role("button", name="确认付款").click()  # the sandbox Alipay's own page
    await expect(cashier.locator(".paid")).to_have_text("✓ 账单已付清", timeout=PAID_MS)
    await snap(cashier, 11, "paid")
    await cashier.close()

    # The line is whole again, in the chat and at the hospital. The payment's message first: it
    # comes with the sweep, and must not arrive after the answer to 额度.
    await expect(phone.replies.last).to_contain_text("已收到刘桂兰的就诊费用 ¥82.50", timeout=NOTICE_MS)
    await phone.say("额度")
    await phone.answered("门诊额度：¥2,000.00，已用 ¥0.00，可用 ¥2,000.00")
    await snap(chat, 12, "line-restored")
    await panel.get_by_role("button", name="刘桂兰").click()
    await expect(panel.locator(".visit .bill")).to_contain_text("已付清")
    assert errors == []
