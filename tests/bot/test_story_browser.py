"""The whole story of the README's first command, in Chromium, on `xinyi serve`'s own app
(bot.server.make_app in sandbox mode, served on loopback): a son enrols in the chat
simulator, adds his mother and books for her; the hospital panel checks her in, posts three
orders, cancels one and checks out with the insurance split; the bill notice arrives in the
son's chat as a template card; he opens it and pays with the sandbox Alipay; 额度 shows the
line whole again. A screenshot of every step goes to artifacts/story-*.png."""
from __future__ import annotations

import re
from functools import partial
from typing import Callable

import pytest
from aiohttp.test_utils import unused_port
from playwright.async_api import Page, expect

from bot.config import Settings
from bot.server import make_app
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 320, "height": 640}  # the narrowest phone in use
# Each run: its screenshots' prefix (story-<prefix>NN-*), the screen, the chat's and the pages' language.
RUNS = {"": (DESKTOP, "zh_Hans"), "320-": (PHONE, "zh_Hans"), "en-": (DESKTOP, "en"), "en-320-": (PHONE, "en")}
BROWSER_LOCALES = {"zh_Hans": "zh-CN", "en": "en-US"}

# What an English-speaking son types and reads where the Simplified Chinese story has the key: his
# chat is switched to English, his browser asks for English pages. Names, the account's own menu
# (set in Chinese on the official account) and the sandbox Alipay's page stay as they are; amounts
# carry CLDR's English symbol for the yuan, CN¥ (handlers.i18n.money).
ENGLISH = {
    "刘洋的手机": "刘洋's phone", "切换到菜单": "Switch to the menu", "切换到键盘": "Switch to the keyboard",
    "发送": "Send", "填入": "Fill in", "关注公众号": "Follow the account",
    "姓名": "Name", "身份证号": "ID number", "手机号": "Mobile number", "家人称呼": "Family member",
    "家人姓名": "Family member's name", "家人身份证号": "Family member's ID number",
    "隐私说明": "Privacy notice", "同意": "agree", "请回复您的姓名": "your name",
    "请回复您的身份证号": "your ID number", "请回复您的手机号": "your mobile number", "承诺书": "commitment",
    "开通成功！您的信用额度是 ¥2,000.00": "You are enrolled! Your credit line is CN¥2,000.00",
    "添加家人": "Add a family member", "什么人": "How are they related to you?",
    "请回复TA的姓名": "their name", "请回复TA的身份证号": "their ID number", "添加 刘桂兰": "Add 刘桂兰",
    "已添加 刘桂兰": "刘桂兰 is added", "给谁挂号": "Who is the appointment for?", "挂哪个科": "Which department?",
    "肚子疼": "stomachache", "哪天去": "Which day?", "请确认": "Please confirm",
    "选医生|请确认": "Choose a doctor|Please confirm", "挂号成功": "Booked!",
    "消化内科 陈志强": "Gastroenterology, 陈志强",
    "信用就医": "Credit care", "接诊": "Admit",
    "POST /api/v1/visits → 答复 HTTP 201": "POST /api/v1/visits → Answer: HTTP 201",
    "血常规 ¥35.00": "Blood count CN¥35.00", "腹部B超 ¥180.00": "Abdominal ultrasound CN¥180.00",
    "胃镜检查 ¥600.00": "Gastroscopy CN¥600.00", "记账": "Charge", "撤销 胃镜检查": "Cancel Gastroscopy",
    "胃镜检查": "Gastroscopy", "已撤销": "Cancelled", "按医保报销 70% 填入": "Fill in with 70% covered by insurance",
    "血常规 自付": "Blood count You pay", "结账": "Check out", "自付 ¥82.50": "you pay CN¥82.50",
    "刘桂兰的就诊账单已出，请按时付款。": "The bill for 刘桂兰's visit is ready. Please pay it on time.",
    "详情": "Details", "支付宝支付": "Alipay", "✓ 账单已付清": "✓ The bill is paid",
    "已收到刘桂兰的就诊费用 ¥82.50": "Payment of CN¥82.50 received for 刘桂兰's visit", "额度": "credit",
    "门诊额度：¥2,000.00，已用 ¥0.00，可用 ¥2,000.00": "Outpatient credit: CN¥2,000.00, used CN¥0.00, available CN¥2,000.00",
    "已付清": "paid", "¥82.50": "CN¥82.50",
}
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

    def __init__(self, page: Page, w: Callable[[str], str]) -> None:
        self.page, self.w = page, w
        self.replies = page.locator(".wx-row.account")

    async def menu(self, top: str, item: str) -> None:
        if await self.page.locator("#menu-bar").is_hidden():
            await self.page.get_by_role("button", name=self.w("切换到菜单")).click()
        await self.page.get_by_role("button", name=top, exact=True).click()
        await self.page.get_by_role("menuitem", name=item, exact=True).click()

    async def say(self, text: str) -> None:
        if await self.page.locator("#input-bar").is_hidden():
            await self.page.get_by_role("button", name=self.w("切换到键盘")).click()
        await self.page.locator("#text").fill(text)
        await self.page.get_by_role("button", name=self.w("发送")).click()

    async def say_and_wait(self, text: str) -> None:
        """Send, then wait for a new reply: a check on the last reply must not read the one before."""
        before = await self.replies.count()
        await self.say(text)
        await expect(self.replies.nth(before)).to_be_attached(timeout=REPLY_MS)

    async def fill_in(self, label: str) -> None:
        """The console's 填入 for one of the persona's papers, then 发送."""
        await self.page.get_by_role("button", name=f"{self.w('填入')} {self.w(label)}", exact=True).click()
        await self.page.get_by_role("button", name=self.w("发送")).click()

    async def answered(self, words: str) -> None:
        await expect(self.replies.last).to_contain_text(self.w(words), timeout=REPLY_MS)

    async def last_reply(self) -> str:
        return await self.replies.last.inner_text()


async def shot(page: Page, number: int, name: str, *, screen: str, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / f"story-{screen}{number:02d}-{name}.png", full_page=full_page)


@pytest.mark.parametrize("run", RUNS)
async def test_the_whole_story_in_a_browser(served, browser, run):
    screen, language = RUNS[run]
    w = (lambda text: text) if language == "zh_Hans" else ENGLISH.__getitem__
    context = await browser.new_context(viewport=screen, locale=BROWSER_LOCALES[language], timezone_id="Asia/Shanghai")
    snap = partial(shot, screen=run)
    errors: list[str] = []

    def watch(page: Page) -> None:
        page.on("console", lambda message: message.type == "error" and errors.append(f"{page.url}: {message.text}"))
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))

    context.on("page", watch)
    chat = await context.new_page()
    await chat.goto(f"{served}/sandbox/")
    phone = Phone(chat, w)

    # The son, Liu Yang, follows the account and enrols: consent, name, ID number, phone, commitment.
    await chat.get_by_role("button", name=re.compile("刘洋")).click()
    await expect(chat.locator("#owner")).to_have_text(w("刘洋的手机"))
    await snap(chat, 1, "the-simulator")
    await chat.locator(".wx-profile").get_by_role("button", name=w("关注公众号")).click()
    await expect(phone.replies.last).to_contain_text("欢迎关注信医", timeout=REPLY_MS)  # before he chose a language
    if language == "en":
        await phone.say("English")
        await expect(phone.replies.last).to_contain_text("Now in English", timeout=REPLY_MS)
    await phone.menu("信用就医", "开通")
    await phone.answered("隐私说明")
    await snap(chat, 2, "enrol-consent")
    await phone.say(w("同意"))
    await phone.answered("请回复您的姓名")
    await phone.fill_in("姓名")
    await phone.answered("请回复您的身份证号")
    await phone.fill_in("身份证号")
    await phone.answered("请回复您的手机号")
    await phone.fill_in("手机号")
    await phone.answered("承诺书")
    await phone.say(w("同意"))
    await phone.answered("开通成功！您的信用额度是 ¥2,000.00")
    await snap(chat, 3, "enrolled")

    # He adds his mother, Liu Guilan, and books 消化内科 for her by saying what hurts.
    await phone.menu("我的", "家人")
    await phone.answered("添加家人")
    await phone.say("1")
    await phone.answered("什么人")
    await phone.fill_in("家人称呼")
    await phone.answered("请回复TA的姓名")
    await phone.fill_in("家人姓名")
    await phone.answered("请回复TA的身份证号")
    await phone.fill_in("家人身份证号")
    await phone.answered("添加 刘桂兰")
    await phone.say("1")
    await phone.answered("已添加 刘桂兰")
    await snap(chat, 4, "mother-added")
    await phone.menu("挂号缴费", "挂号")
    await phone.answered("给谁挂号")
    await phone.say("2")
    await phone.answered("挂哪个科")
    await phone.say(w("肚子疼"))
    await phone.answered("哪天去")
    while w("请确认") not in await phone.last_reply():  # the day, then the doctor when there is a choice
        await phone.say_and_wait("1")
        await expect(phone.replies.last).to_contain_text(re.compile(w("选医生|请确认")), timeout=REPLY_MS)
    await phone.say("1")
    await phone.answered("挂号成功")
    await phone.answered("消化内科 陈志强")
    await snap(chat, 5, "booked")

    # The hospital: her ID number finds the booked visit; check in, three orders, one cancelled, checkout.
    panel = await context.new_page()
    await panel.goto(f"{served}/sandbox/hospital")
    await panel.get_by_role("button", name="刘桂兰").click()
    visit = panel.locator(".visit")
    await expect(visit).to_have_count(1)
    await expect(visit).to_contain_text(w("信用就医"))
    await expect(visit).to_contain_text("挂号费 消化内科 陈志强")  # the HIS names its own items
    await visit.get_by_role("button", name=w("接诊")).click()
    await expect(panel.locator(".log-entry h4").first).to_contain_text(w("POST /api/v1/visits → 答复 HTTP 201"))
    for order in ("血常规 ¥35.00", "腹部B超 ¥180.00", "胃镜检查 ¥600.00"):
        rows = await panel.locator(".visit table.charges tr").count()
        await panel.get_by_role("button", name=w(order)).click()
        await panel.get_by_role("button", name=w("记账"), exact=True).click()
        await expect(panel.locator(".visit table.charges tr")).to_have_count(rows + 1)
    await snap(panel, 6, "hospital-orders", full_page=True)
    panel.once("dialog", lambda dialog: dialog.accept())  # 撤销 asks first
    await panel.get_by_role("button", name=w("撤销 胃镜检查")).click()
    await expect(panel.locator(".visit table.charges tr", has_text=w("胃镜检查"))).to_contain_text(w("已撤销"))
    await panel.get_by_role("button", name=w("按医保报销 70% 填入")).click()
    await expect(panel.get_by_label(w("血常规 自付"))).to_have_value("10.50")
    await snap(panel, 7, "hospital-split", full_page=True)
    await panel.get_by_role("button", name=w("结账"), exact=True).click()
    await expect(panel.locator(".visit .bill")).to_contain_text(w("自付 ¥82.50"), timeout=REPLY_MS)
    await expect(panel.locator(".log-entry .answer").first).to_contain_text('"self_pay_fen": 8250')
    await snap(panel, 8, "hospital-checked-out", full_page=True)

    # The bill notice reaches the son's chat as a template card; he pays from its link.
    await chat.bring_to_front()
    card = chat.locator(".wx-card")
    await expect(card).to_contain_text(w("刘桂兰的就诊账单已出，请按时付款。"), timeout=NOTICE_MS)
    await expect(card).to_contain_text(w("¥82.50"))
    await snap(chat, 9, "bill-notice")
    async with context.expect_page() as opened:
        await card.get_by_role("link", name=w("详情")).click()
    cashier = await opened.value
    await expect(cashier.locator(".due .amount")).to_have_text(w("¥82.50"))
    await snap(cashier, 10, "cashier")
    await cashier.get_by_role("link", name=w("支付宝支付"), exact=True).click()
    await cashier.get_by_role("button", name="确认付款").click()  # the sandbox Alipay's own page
    await expect(cashier.locator(".paid")).to_have_text(w("✓ 账单已付清"), timeout=PAID_MS)
    await snap(cashier, 11, "paid")
    await cashier.close()

    # The line is whole again, in the chat and at the hospital. The payment's message first: it
    # comes with the sweep, and must not arrive after the answer to 额度.
    await expect(phone.replies.last).to_contain_text(w("已收到刘桂兰的就诊费用 ¥82.50"), timeout=NOTICE_MS)
    await phone.say(w("额度"))
    await phone.answered("门诊额度：¥2,000.00，已用 ¥0.00，可用 ¥2,000.00")
    await snap(chat, 12, "line-restored")
    await panel.get_by_role("button", name="刘桂兰").click()
    await expect(panel.locator(".visit .bill")).to_contain_text(w("已付清"))
    assert errors == []
