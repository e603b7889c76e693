"""The cashier `/pay/{token}` over real HTTP: the app on a loopback port with the fake WeChat
(OAuth) and the sandbox WeChat Pay and Alipay mounted in it, real keys, real databases."""
from __future__ import annotations

import base64
import json
import re
from datetime import timedelta
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import select

from billing import visits
from billing.members import enrol
from billing.payments import pay_at_hospital
from billing.trades import PAY_LINK_TTL
from bot.alipay import load_private_key
from bot.cashier import CHECKS_MAX, negotiated_locale
from bot.sandbox.alipay_gateway import sign_content
from storage.models import Trade
from cashier_support import DRUG, LIMIT_FEN, SELF_PAY_FEN, WECHATPAY_MOUNT, Cashier, start_cashier, visible_text

from conftest import DUE, START
from handlers.i18n import day, department, moment, money

SANDBOX_OPENID = "o-sandbox-user"  # who the fake WeChat's OAuth says the payer is
WECHAT_BROWSER = "Mozilla/5.0 (Linux; Android 14) MicroMessenger/8.0.50"


@pytest.fixture
async def cashier(make_core, clock, aiohttp_server) -> Cashier:
    return await start_cashier(await make_core(), clock, aiohttp_server)


@pytest.fixture
async def browser():
    async with aiohttp.ClientSession() as session:
        yield session


async def fetch(browser: aiohttp.ClientSession, url: str, **kwargs) -> tuple[int, str, aiohttp.ClientResponse]:
    async with browser.get(url, allow_redirects=False, **kwargs) as response:
        return response.status, await response.text(), response


def pay_links(html: str) -> list[str]:
    return re.findall(r'href="(/pay/[^"]+/(?:wechat|alipay)\?[^"]*)"', html)


def merchant_signed(config, message: str, signature: str) -> bool:
    try:
        config.private_key.public_key().verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except Exception:  # any failure to verify is the answer
        return False
    return True


async def test_the_page_itemises_the_bill_in_its_three_parts_with_totals(cashier, browser):
    status, html, response = await fetch(browser, cashier.url())
    assert (status, response.content_type, response.charset) == (200, "text/html", "utf-8")
    text = visible_text(html)
    assert '<html lang="zh-Hans">' in html
    assert "测试医院 · 内科" in text and f"就诊日期 {day(START, 'zh_Hans')}" in text
    assert '<p class="amount">¥55.50</p>' in html and f"请在 {moment(DUE, 'zh_Hans')} 前付款" in text  # 48 h, Beijing time
    assert "血常规 ¥120.00 医保支付 ¥70.00 个人账户 ¥20.00 自付 ¥30.00" in text
    assert f"{DRUG} ¥45.50 医保支付 ¥20.00 个人账户 ¥0.00 自付 ¥25.50" in text
    assert "普通门诊挂号 ¥5.00 已在医院缴费 医保支付 ¥0.00 个人账户 ¥0.00 自付 ¥5.00" in text  # shown, not owed again
    assert "合计 ¥165.50 医保支付 ¥90.00 个人账户 ¥20.00 自付 ¥55.50" in text
    assert f"账单号 {cashier.bill_no}" in text
    assert "阿莫西林 &lt;胶囊&gt; &amp; &quot;0.25g&quot;" in html and "<胶囊>" not in html
    assert pay_links(html) == [f"/pay/{cashier.token}/wechat?lang=zh_Hans", f"/pay/{cashier.token}/alipay?lang=zh_Hans"]
    assert "家人也可以打开这个链接代付。" in text


@pytest.mark.parametrize(("query", "accept_language", "html_lang"), [
    ({"lang": "en"}, None, "en"),
    ({"lang": "zh_Hant"}, "en", "zh-Hant"),
    ({}, "en-US,en;q=0.9", "en"),
    ({}, "zh-TW,zh;q=0.8,en;q=0.5", "zh-Hant"),
    ({"lang": "klingon"}, "de-DE, zh-CN;q=0.6", "zh-Hans"),
])
async def test_the_language_follows_lang_then_accept_language(cashier, browser, query, accept_language, html_lang):
    headers = {"Accept-Language": accept_language} if accept_language else {}
    _, html, _ = await fetch(browser, cashier.url(**query), headers=headers)
    locale = {"en": "en", "zh-Hant": "zh_Hant", "zh-Hans": "zh_Hans"}[html_lang]
    assert f'<html lang="{html_lang}">' in html and f'<p class="amount">{money(5550, locale)}</p>' in html
    # The demo's department names are translated; amounts, dates and labels follow the page's language.
    assert department("内科", locale) in visible_text(html) and day(START, locale) in visible_text(html)
    assert locale == "zh_Hans" or "内科" not in visible_text(html)
    assert all(link.endswith(f"?lang={locale}") for link in pay_links(html)) and len(pay_links(html)) == 2


@pytest.mark.parametrize(("header", "locale"), [
    ("", "zh_Hans"), ("en", "en"), ("en-GB", "en"), ("zh-HK", "zh_Hant"), ("zh-Hant-TW", "zh_Hant"), ("zh", "zh_Hans"),
    ("zh-Hans-CN", "zh_Hans"), ("fr, en;q=0.2, zh-TW;q=0.4", "zh_Hant"), ("en;q=0, zh-MO", "zh_Hant"),
    ("de, ja", "zh_Hans"), ("en;q=oops, zh", "zh_Hans"), ("EN_us", "en"),
])
def test_accept_language_is_negotiated_by_quality(header, locale):
    assert negotiated_locale(header) == locale


async def test_an_unknown_or_expired_link_gets_a_friendly_404(cashier, browser, clock):
    for channel in ("", "wechat", "alipay"):
        status, html, response = await fetch(browser, cashier.url(channel, token="not-a-real-token"))
        assert status == 404 and "找不到这张账单" in html and "发送“账单”" in html, channel
        assert response.headers["Cache-Control"] == "no-store"
    clock.advance(PAY_LINK_TTL - timedelta(seconds=1))
    assert (await fetch(browser, cashier.url()))[0] == 200
    clock.advance(seconds=2)
    status, html, _ = await fetch(browser, cashier.url())
    assert status == 404 and "这个付款链接无效或已经过期" in html
    assert (await fetch(browser, cashier.url("alipay")))[0] == 404
    assert cashier.alipay.trades == {}


async def test_a_paid_bill_shows_paid_and_offers_no_way_to_pay_again(cashier, browser, clock):
    await pay_at_hospital(cashier.core, "H1", cashier.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 1000})
    _, html, _ = await fetch(browser, cashier.url())
    assert '<p class="amount">¥45.50</p>' in html and "已付 ¥10.00" in visible_text(html) and len(pay_links(html)) == 2

    clock.advance(hours=1)
    await pay_at_hospital(cashier.core, "H1", cashier.bill_no, {"payment_no": "P2", "channel": "window", "amount_fen": 4550})
    _, html, _ = await fetch(browser, cashier.url())
    text = visible_text(html)
    assert f"✓ 账单已付清 ¥55.50 付款时间 {moment(START + timedelta(hours=1), 'zh_Hans')}" in text and "需要支付" not in text
    assert pay_links(html) == [] and "代付" not in text
    for channel in ("wechat", "alipay"):
        status, _, response = await fetch(browser, cashier.url(channel))
        assert (status, response.headers["Location"]) == (302, f"/pay/{cashier.token}?lang=zh_Hans")
    async with cashier.core.db.transaction() as session:
        assert list(await session.scalars(select(Trade))) == []


async def test_wechat_pay_learns_the_openid_by_oauth_and_returns_jsapi_params_that_verify(cashier, browser):
    status, _, response = await fetch(browser, cashier.url("wechat"))
    authorize = response.headers["Location"]
    parts = urlsplit(authorize)
    assert status == 302 and f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{cashier.base}/sandbox/wechat/connect/oauth2/authorize"
    assert dict(parse_qsl(parts.query)) == {"appid": cashier.wechatpay_config.appid, "response_type": "code",
                                            "scope": "snsapi_base", "state": "pay",
                                            "redirect_uri": cashier.url("wechat", lang="zh_Hans")}
    assert parts.fragment == "wechat_redirect"

    status, _, response = await fetch(browser, authorize)  # WeChat's silent authorize sends the payer back
    back = response.headers["Location"]
    assert status == 302 and back.startswith(cashier.url("wechat", lang="zh_Hans") + "&code=")
    status, html, response = await fetch(browser, back)
    assert status == 200 and response.headers["Referrer-Policy"] == "no-referrer"
    params = json.loads(re.search(r'<script type="application/json" id="jsapi">(.*?)</script>', html).group(1))
    assert (params["appId"], params["signType"]) == (cashier.wechatpay_config.appid, "RSA")
    assert merchant_signed(cashier.wechatpay_config, "".join(
        f"{params[k]}\n" for k in ("appId", "timeStamp", "nonceStr", "package")), params["paySign"])
    order = next(o for o in cashier.wechatpay.orders.values() if f"prepay_id={o.prepay_id}" == params["package"])
    assert (order.total_fen, order.openid) == (SELF_PAY_FEN, SANDBOX_OPENID)
    async with cashier.core.db.transaction() as session:
        trade = await session.scalar(select(Trade))
    assert (trade.out_trade_no, trade.channel, trade.amount_fen, trade.payer_openid) == (
        order.out_trade_no, "wechatpay", SELF_PAY_FEN, SANDBOX_OPENID)
    assert f'data-sandbox-pay="{WECHATPAY_MOUNT}/sandbox/pay"' in html and "沙箱环境" in html
    assert f'data-done="/pay/{cashier.token}?lang=zh_Hans&amp;check=1"' in html

    status, _, response = await fetch(browser, back)  # a reload: the code was used; a fresh one is asked for
    assert status == 302 and dict(parse_qsl(urlsplit(response.headers["Location"]).query))["state"] == "again"
    status, html, _ = await fetch(browser, back.replace("state=pay", "state=again"))  # that fails too: a message, no loop
    assert status == 502 and "暂时无法打开付款，请稍后再试。" in html and f'href="/pay/{cashier.token}?lang=zh_Hans"' in html

    async with browser.post(f"{cashier.base}{WECHATPAY_MOUNT}/sandbox/pay", json=params) as paid:
        assert (await paid.json())["err_msg"] == "get_brand_wcpay_request:ok"
    await cashier.wechatpay.notices_sent()
    assert await cashier.bill() == ("paid", SELF_PAY_FEN, LIMIT_FEN)
    _, html, _ = await fetch(browser, cashier.url(check="1"))
    assert "账单已付清" in html and "http-equiv" not in html


async def test_alipay_redirects_to_the_gateway_signed_rsa2_and_the_page_waits_for_the_notice(cashier, browser):
    status, _, response = await fetch(browser, cashier.url("alipay", lang="en"))
    gateway = response.headers["Location"]
    assert status == 302 and gateway.startswith(cashier.alipay_config.gateway + "?")
    params = dict(parse_qsl(urlsplit(gateway).query))
    signature = base64.b64decode(params["sign"])
    load_private_key(cashier.alipay_config.app_private_key).public_key().verify(
        signature, sign_content(params, "sign").encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if forged
    biz = json.loads(params["biz_content"])
    assert (params["method"], params["sign_type"], params["return_url"]) == (
        "alipay.trade.wap.pay", "RSA2", cashier.url(lang="en"))
    assert (biz["total_amount"], biz["product_code"], biz["subject"]) == ("55.50", "QUICK_WAP_WAY", f"信医账单 {cashier.bill_no}")

    cashier.alipay.deliver_notices = False  # the notice comes later: the page must wait for it
    status, html, _ = await fetch(browser, gateway)
    assert status == 200
    pay_button = urljoin(gateway, re.search(r'<form method="post" action="([^"]+)"', html).group(1))
    async with browser.post(pay_button, allow_redirects=False) as done:
        returned = done.headers["Location"]
    assert returned.startswith(cashier.url(lang="en") + "&")
    status, html, _ = await fetch(browser, returned)
    assert status == 200 and '<p class="notice" role="status">' in html and pay_links(html) == []
    assert f'<meta http-equiv="refresh" content="2; url=/pay/{cashier.token}?lang=en&amp;check=2">' in html

    assert await cashier.alipay.send(biz["out_trade_no"]) == "success"
    _, html, _ = await fetch(browser, cashier.url(lang="en", check="2"))
    assert '<p class="paid" role="status">' in html and "http-equiv" not in html
    assert await cashier.bill() == ("paid", SELF_PAY_FEN, LIMIT_FEN)


async def test_the_wait_for_a_result_ends_with_advice_and_the_buttons_back(cashier, browser):
    _, html, _ = await fetch(browser, cashier.url(check=str(CHECKS_MAX - 1)))
    assert f"check={CHECKS_MAX}" in html and pay_links(html) == []
    _, html, _ = await fetch(browser, cashier.url(check=str(CHECKS_MAX)))
    assert "http-equiv" not in html and "如果您已经付款，请不要重复付款" in html and len(pay_links(html)) == 2
    for wrong in ("0", str(CHECKS_MAX + 1), "x", "١", "1" * 5000):  # not a look for a result: the plain page
        _, html, _ = await fetch(browser, cashier.url(check=wrong))
        assert "http-equiv" not in html and "付款结果" not in html and len(pay_links(html)) == 2, wrong[:20]


async def test_every_answer_is_uncached_unreferred_and_under_a_strict_csp(cashier, browser):
    for url in (cashier.url(), cashier.url(token="unknown"), cashier.url("alipay"), cashier.url("wechat")):
        _, html, response = await fetch(browser, url)
        headers = response.headers
        assert (headers["Cache-Control"], headers["Referrer-Policy"], headers["X-Content-Type-Options"]) == (
            "no-store", "no-referrer", "nosniff"), url
        csp = dict(part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
        assert (csp["default-src"], csp["script-src"], csp["frame-ancestors"], csp["form-action"]) == (
            "'none'", "'self'", "'none'", "'none'"), url
    _, html, _ = await fetch(browser, cashier.url())
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/cashier.js" defer>']  # nothing inline
    for asset, kinds in (("cashier.css", ("text/css",)), ("cashier.js", ("text/javascript", "application/javascript"))):
        async with browser.get(f"{cashier.base}/static/{asset}") as response:
            assert response.status == 200 and response.content_type in kinds


async def test_wechat_pay_outside_wechat_says_where_to_open_the_link(make_core, clock, aiohttp_server, browser):
    cashier = await start_cashier(await make_core(), clock, aiohttp_server, sandbox_bridge=False)
    _, html, _ = await fetch(browser, cashier.url())
    assert pay_links(html) == [f"/pay/{cashier.token}/alipay?lang=zh_Hans"] and "微信支付请在微信里打开这个链接。" in html
    _, html, _ = await fetch(browser, cashier.url(), headers={"User-Agent": WECHAT_BROWSER})
    assert len(pay_links(html)) == 2 and "请在微信里打开" not in visible_text(html)


async def test_a_channel_not_configured_is_not_offered(make_core, clock, aiohttp_server, browser):
    cashier = await start_cashier(await make_core(), clock, aiohttp_server, wechatpay=False, alipay=False)
    _, html, _ = await fetch(browser, cashier.url(), headers={"User-Agent": WECHAT_BROWSER})
    assert pay_links(html) == [] and "¥55.50" in html
    for channel in ("wechat", "alipay"):
        status, html, _ = await fetch(browser, cashier.url(channel))
        assert status == 404 and "这个付款方式暂时不能用" in html


async def test_the_page_stops_looking_once_the_attempt_is_closed(cashier, browser):
    status, _, response = await fetch(browser, cashier.url("alipay"))  # opened Alipay, never paid
    assert status == 302
    _, html, _ = await fetch(browser, cashier.url(check="1"))
    assert "check=2" in html  # the trade is open: its notice may come
    async with cashier.core.db.transaction() as session:
        (await session.scalar(select(Trade))).status = "closed"  # the sweep closed it (abandoned, expired)
    _, html, _ = await fetch(browser, cashier.url(check="2"))
    assert "http-equiv" not in html and "如果您已经付款，请不要重复付款" in html and len(pay_links(html)) == 2


async def test_the_page_names_the_patient_and_shows_a_receipt_once_paid(cashier, browser, clock):
    _, html, _ = await fetch(browser, cashier.url())
    assert "就诊人：张伟" in visible_text(html) and "付款凭证" not in html
    clock.advance(minutes=5)
    await pay_at_hospital(cashier.core, "H1", cashier.bill_no, {"payment_no": "P9", "channel": "window", "amount_fen": 5550})
    _, html, _ = await fetch(browser, cashier.url())
    text = visible_text(html)
    assert "就诊人：张伟" in text
    paid_at = moment(START + timedelta(minutes=5), "zh_Hans")
    assert (f"付款凭证 账单号 {cashier.bill_no} 就诊人 张伟 金额 ¥55.50 付款方式 医院窗口 付款时间 {paid_at} 交易号 P9"
            in text), text


async def test_after_a_partial_refund_the_page_says_paid_refunded_and_kept(cashier, browser):
    await pay_at_hospital(cashier.core, "H1", cashier.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 5550})
    await visits.cancel_charge(cashier.core, "H1", "V1", "C2")  # the drug, never taken: ¥25.50 back
    _, html, _ = await fetch(browser, cashier.url())
    text = visible_text(html)
    assert "✓ 账单已付清 ¥30.00 已付 ¥55.50，已退回 ¥25.50，实付 ¥30.00" in text, text


async def overdue_xiamen_bill(core) -> tuple[str, str]:
    """吴丽华 chose 鹭岛示例银行 (42 interest-free days, 500 ppm); her 179.99-yuan bill is two whole days and
    an hour past due: 2 x floor(17,999 x 500 / 1,000,000) = 16 fen of interest."""
    await enrol(core, openid="o-wu", name="吴丽华", id_number="350200197509300157", phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version,
                institution="ludao-bank")
    await visits.open_visit(core, "H1", {"visit_no": "V1", "id_number": "350200197509300157", "department": "内科",
                                         "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, "H1", "V1", {"charge_no": "C1", "category": "exam", "name": "CT", "amount_fen": 17999})
    answer = await visits.checkout(core, "H1", "V1", {"items": [
        {"charge_no": "C1", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": 17999}]})
    core.clock.advance(days=44, hours=1)
    return answer["bill_no"], answer["pay_url"].rsplit("/", 1)[1]


async def test_the_cashier_asks_for_the_interest_and_alipay_settles_the_bill_with_it(make_core, clock, aiohttp_server, browser):
    cashier = await start_cashier(await make_core("xiamen"), clock, aiohttp_server, issue=overdue_xiamen_bill)
    _, html, _ = await fetch(browser, cashier.url())
    text = visible_text(html)
    assert "需要支付 ¥180.15" in text and "含逾期利息 ¥0.16（已付 ¥0.00），先还利息再还本金" in text
    assert "不收利息" not in text  # past its due time, whether or not a sweep has moved it yet
    status, _, response = await fetch(browser, cashier.url("alipay"))
    gateway = response.headers["Location"]
    biz = json.loads(dict(parse_qsl(urlsplit(gateway).query))["biz_content"])
    assert (status, biz["total_amount"]) == (302, "180.15")  # the trade's quote: principal and interest
    cashier.alipay.deliver_notices = False  # sent below, at once
    _, html, _ = await fetch(browser, gateway)
    async with browser.post(urljoin(gateway, re.search(r'<form method="post" action="([^"]+)"', html).group(1)),
                            allow_redirects=False):
        pass
    assert await cashier.alipay.send(biz["out_trade_no"]) == "success"
    _, html, _ = await fetch(browser, cashier.url())
    assert "✓ 账单已付清 ¥180.15 含逾期利息 ¥0.16（已付 ¥0.16）" in visible_text(html)
    assert await cashier.bill() == ("paid", 17999, 300000)
