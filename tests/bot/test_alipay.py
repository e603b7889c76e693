"""Alipay over real HTTP: the xinyi app and the sandbox Alipay gateway run as two loopback
servers with RSA keys generated here. A bill is paid through the wap cashier and the signed
notice; repeats, races, late and forged notices; reconciliation by alipay.trade.query; a
second payment refunded through alipay.trade.refund."""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qsl, urljoin, urlsplit

import aiohttp
import pytest
from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from billing import members, visits
from billing.clock import FixedClock
from billing.core import Core
from billing.payments import pay_at_hospital
from billing.refunds import GatewayRefund, out_refund_no
from billing.sweep import sweep
from billing.trades import open_trade, settle_trade
from bot.alipay import (
    ALIPAY, ALIPAY_CONFIG, Alipay, AlipayConfig, AlipayError, mask_buyer, verified_response, wap_checkout, yuan_to_fen,
)
from bot.app import build_app
from bot.config import ConfigError, Settings
from bot.reconcile import GatewayTrade, Reconciler
from bot.sandbox.alipay_gateway import MOUNT, AlipaySandbox, private_pem, public_pem, sandbox_merchant
from storage.models import Base, Bill, CreditLine, Member, Payment, Refund, Trade

APP_ID = "2021000000000042"
ZHANG_WEI = "110105198503120012"
LIU_YANG = "11010819920709006X"
_serial = itertools.count(1)


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def issue_bill(core: Core, id_number: str, amount_fen: int) -> tuple[str, str]:
    """A visit charged and checked out all self-pay; (bill_no, the pay link's token)."""
    visit_no, charge_no = f"V{next(_serial)}", f"C{next(_serial)}"
    await visits.open_visit(core, "H1", {"visit_no": visit_no, "id_number": id_number, "department": "内科",
                                         "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, "H1", visit_no, {"charge_no": charge_no, "category": "exam", "name": "血常规",
                                                    "amount_fen": amount_fen, "prepaid": False})
    answer = await visits.checkout(core, "H1", visit_no, {"items": [
        {"charge_no": charge_no, "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": amount_fen}]})
    return answer["bill_no"], answer["pay_url"].rsplit("/", 1)[1]


async def enrol(core: Core, id_number: str) -> int:
    person = await core.registry.lookup(id_number)
    enrolment = await members.enrol(core, openid=None, name=person.name, id_number=id_number, phone="13800138000",
                                    consent_version=core.policy.consent_version,
                                    commitment_version=core.policy.commitment_version)
    return enrolment.member_id


async def snapshot(core: Core) -> tuple[dict[str, int], list[tuple], list[tuple]]:
    """Rows per table, every line's use and every bill's state: equal before and after means nothing changed."""
    async with core.db.transaction() as session:
        counts = {t.name: await session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
        lines = (await session.execute(select(CreditLine.id, CreditLine.used_fen).order_by(CreditLine.id))).all()
        bills = (await session.execute(select(Bill.id, Bill.status, Bill.paid_fen).order_by(Bill.id))).all()
    return counts, [tuple(r) for r in lines], [tuple(r) for r in bills]


async def one(core: Core, model, *where):
    async with core.db.transaction() as session:
        return await session.scalar(select(model).where(*where))


async def all_of(core: Core, model, *where) -> list:
    async with core.db.transaction() as session:
        return list(await session.scalars(select(model).where(*where).order_by(model.id)))


@dataclass
class World:
    core: Core
    sandbox: AlipaySandbox
    alipay: Alipay
    app_url: str
    browser: aiohttp.ClientSession

    async def cashier(self, token: str) -> tuple[str, str]:
        """What the cashier's Alipay button does: (the 302 target, its out_trade_no)."""
        url = await wap_checkout(self.core, self.alipay, token, return_url=f"{self.app_url}/pay/{token}")
        return url, json.loads(dict(parse_qsl(urlsplit(url).query))["biz_content"])["out_trade_no"]

    async def open(self, url: str) -> str:
        """The payer opens Alipay's page; where its pay button posts."""
        async with self.browser.get(url) as page:
            assert page.status == 200, await page.text()
            return urljoin(url, re.search(r'<form method="post" action="([^"]+)"', await page.text()).group(1))

    async def press(self, pay_button: str, status: int = 302) -> str:
        """The payer presses pay; the redirect's Location."""
        async with self.browser.post(pay_button, allow_redirects=False) as done:
            assert done.status == status, await done.text()
            return done.headers.get("Location", "")

    async def pay(self, url: str) -> str:
        return await self.press(await self.open(url))

    async def paid_trade(self, token: str) -> str:
        url, out_trade_no = await self.cashier(token)
        await self.pay(url)
        await self.sandbox.wait_deliveries()
        return out_trade_no


@pytest.fixture
async def world(make_core, clock, aiohttp_server, unused_tcp_port, unused_tcp_port_factory):
    core = await make_core("beijing-shijingshan")
    await enrol(core, ZHANG_WEI)
    port, gateway_port = unused_tcp_port, unused_tcp_port_factory()
    config, sandbox = sandbox_merchant(clock=clock, notify_url=f"http://127.0.0.1:{port}/notify/alipay",
                                       gateway=f"http://127.0.0.1:{gateway_port}/gateway.do", app_id=APP_ID,
                                       retry_delays_s=(0.05, 0.05))
    await aiohttp_server(sandbox.app(), port=gateway_port)
    app = build_app(core, background=False)
    app[ALIPAY_CONFIG] = config
    await aiohttp_server(app, port=port)
    async with aiohttp.ClientSession() as browser:
        yield World(core, sandbox, app[ALIPAY], f"http://127.0.0.1:{port}", browser)


async def test_wap_pay_and_its_notice_pay_the_bill(world, clock, caplog):
    caplog.set_level(logging.INFO)
    core, sandbox = world.core, world.sandbox
    bill_no, token = await issue_bill(core, ZHANG_WEI, 12345)
    member = await one(core, Member, Member.status == "active")
    assert (await one(core, CreditLine, CreditLine.member_id == member.id)).used_fen == 12345

    url, out_trade_no = await world.cashier(token)
    request = dict(parse_qsl(urlsplit(url).query))
    assert url.startswith(world.alipay.config.gateway + "?")
    assert {k: v for k, v in request.items() if k not in ("sign", "biz_content")} == {
        "app_id": APP_ID, "method": "alipay.trade.wap.pay", "format": "json", "charset": "utf-8", "sign_type": "RSA2",
        "timestamp": "2026-03-02 17:00:00", "version": "1.0", "notify_url": f"{world.app_url}/notify/alipay",
        "return_url": f"{world.app_url}/pay/{token}"}
    assert json.loads(request["biz_content"]) == {
        "out_trade_no": out_trade_no, "total_amount": "123.45", "subject": f"信医账单 {bill_no}",
        "product_code": "QUICK_WAP_WAY", "time_expire": "2026-03-02 17:30:00", "quit_url": f"{world.app_url}/pay/{token}"}

    location = await world.pay(url)
    back = dict(parse_qsl(urlsplit(location).query))
    assert location.startswith(f"{world.app_url}/pay/{token}?") and back["out_trade_no"] == out_trade_no
    await sandbox.wait_deliveries()
    assert sandbox.answers == [(out_trade_no, "success")]

    paid = await one(core, Bill, Bill.bill_no == bill_no)
    assert (paid.status, paid.paid_fen, paid.paid_at) == ("paid", 12345, clock.now())
    assert (await one(core, CreditLine, CreditLine.member_id == member.id)).used_fen == 0
    payment = await one(core, Payment, Payment.bill_id == paid.id)
    trade_no = sandbox.trades[out_trade_no].trade_no
    assert (payment.source, payment.channel, payment.payment_no, payment.gateway_txn_id, payment.amount_fen,
            payment.applied_fen) == ("alipay", "alipay", out_trade_no, trade_no, 12345, 12345)
    trade = await one(core, Trade, Trade.out_trade_no == out_trade_no)
    assert (trade.status, trade.gateway_txn_id, trade.paid_at) == ("paid", trade_no, clock.now())
    buyer_id = sandbox.trades[out_trade_no].buyer_id
    assert buyer_id not in caplog.text and mask_buyer(buyer_id) in caplog.text


async def test_repeated_and_concurrent_notices_apply_once(world):
    core, sandbox = world.core, world.sandbox
    sandbox.deliver_notices = False
    bill_no, token = await issue_bill(core, ZHANG_WEI, 5000)
    out_trade_no = await world.paid_trade(token)
    notice = sandbox.notice(out_trade_no)

    answers = await asyncio.gather(*(sandbox.send(out_trade_no, notice) for _ in range(5)))
    assert answers == ["success"] * 5
    after_first = await snapshot(core)
    assert await sandbox.send(out_trade_no, notice) == "success"
    assert await sandbox.send(out_trade_no) == "success"  # Alipay's next try, a fresh notify_id
    assert await snapshot(core) == after_first
    bill = await one(core, Bill, Bill.bill_no == bill_no)
    assert (bill.status, bill.paid_fen) == ("paid", 5000)
    assert [(p.amount_fen, p.applied_fen) for p in await all_of(core, Payment)] == [(5000, 5000)]


async def test_a_query_first_then_the_notice_applies_once(world, clock):
    core, sandbox = world.core, world.sandbox
    sandbox.deliver_notices = False
    bill_no, token = await issue_bill(core, ZHANG_WEI, 880)
    out_trade_no = await world.paid_trade(token)
    paid_at = clock.now()
    reconcile = Reconciler(core, {"alipay": world.alipay})
    assert await reconcile() == 0  # within the grace period the notice is awaited, nobody asks
    clock.advance(minutes=4)

    assert await reconcile() == 1
    trade = await one(core, Trade, Trade.out_trade_no == out_trade_no)
    assert (trade.status, trade.gateway_txn_id, trade.paid_at) == ("paid", sandbox.trades[out_trade_no].trade_no, paid_at)
    settled = await snapshot(core)
    assert await sandbox.send(out_trade_no) == "success"
    assert await snapshot(core) == settled
    assert (await one(core, Bill, Bill.bill_no == bill_no)).status == "paid"


REFUSED = {
    "forged: signed with another key": lambda s, o: s.notice(o, signer=new_key()),
    "tampered after signing": lambda s, o: s.notice(o) | {"total_amount": "0.01"},
    "unsigned": lambda s, o: {k: v for k, v in s.notice(o).items() if k != "sign"},
    "sign_type RSA": lambda s, o: s.notice(o) | {"sign_type": "RSA"},
    "another app's": lambda s, o: s.notice(o, app_id="2021000000009999"),
    "another amount": lambda s, o: s.notice(o, total_amount="49.99"),
    "an amount with three decimals": lambda s, o: s.notice(o, total_amount="50.000"),
    "an unknown out_trade_no": lambda s, o: s.notice(o, out_trade_no="XY260302UNKNOWN00000"),
}


async def test_a_refused_notice_is_sent_again_on_schedule_and_never_pays(world):
    core, sandbox = world.core, world.sandbox
    bill_no, token = await issue_bill(core, ZHANG_WEI, 900)
    url, out_trade_no = await world.cashier(token)
    pay_button = await world.open(url)
    sandbox.app_id = "2021000000009999"  # from now on Alipay signs notices for another app
    await world.press(pay_button)
    await sandbox.wait_deliveries()
    assert sandbox.answers == [(out_trade_no, "failure")] * 3  # the first try and both retries
    assert (await one(core, Bill, Bill.bill_no == bill_no)).status == "open"


async def test_without_alipay_configured_the_notify_endpoint_refuses(make_core, aiohttp_client):
    client = await aiohttp_client(build_app(await make_core("beijing-shijingshan"), background=False))
    response = await client.post("/notify/alipay", data={"out_trade_no": "XY1"})
    assert (response.status, await response.text()) == (503, "failure")


async def test_forged_mismatched_and_unknown_notices_change_nothing(world, caplog):
    caplog.set_level(logging.INFO)
    core, sandbox = world.core, world.sandbox
    sandbox.deliver_notices = False
    bill_no, token = await issue_bill(core, ZHANG_WEI, 5000)
    url, out_trade_no = await world.cashier(token)
    await world.pay(url)
    before = await snapshot(core)

    for case, notice in REFUSED.items():
        assert await sandbox.send(out_trade_no, notice(sandbox, out_trade_no)) == "failure", case
        assert await snapshot(core) == before, case
    for status in ("WAIT_BUYER_PAY", "TRADE_CLOSED"):  # genuine, but no payment: acknowledged, not applied
        assert await sandbox.send(out_trade_no, sandbox.notice(out_trade_no, trade_status=status)) == "success"
        assert await snapshot(core) == before, status
    buyer_id = sandbox.trades[out_trade_no].buyer_id
    assert caplog.text.count("alipay notice refused") == len(REFUSED)
    assert buyer_id not in caplog.text and mask_buyer(buyer_id) in caplog.text

    assert await sandbox.send(out_trade_no) == "success"  # the genuine notice still pays
    assert (await one(core, Bill, Bill.bill_no == bill_no)).status == "paid"


async def test_the_settled_trade_refuses_a_notice_of_another_transaction(world):
    core, sandbox = world.core, world.sandbox
    _, token = await issue_bill(core, ZHANG_WEI, 700)
    out_trade_no = await world.paid_trade(token)
    settled = await snapshot(core)
    other = sandbox.notice(out_trade_no, trade_no="2026030222001999999999999999")
    assert await sandbox.send(out_trade_no, other) == "failure"
    assert await snapshot(core) == settled


async def test_a_late_notice_is_settled_by_reconciliation_before_the_overdue_sweep(world, clock):
    core, sandbox = world.core, world.sandbox
    sandbox.deliver_notices = False  # Alipay's notices are lost for now
    zhang_bill, token = await issue_bill(core, ZHANG_WEI, 20000)
    out_trade_no = await world.paid_trade(token)
    liu = await enrol(core, LIU_YANG)
    liu_bill, _ = await issue_bill(core, LIU_YANG, 3000)  # never paid: the sweep does suspend
    clock.advance(hours=48, minutes=1)

    report = await sweep(core, reconcile=Reconciler(core, {"alipay": world.alipay}))
    assert (report.reconciled, report.bills_overdue) == (1, 1)
    assert (await one(core, Bill, Bill.bill_no == zhang_bill)).status == "paid"
    assert (await one(core, Bill, Bill.bill_no == liu_bill)).status == "advanced"
    statuses = {m.id: m.status for m in await all_of(core, Member)}
    assert statuses[liu] == "suspended" and list(statuses.values()).count("active") == 1

    settled = await snapshot(core)
    assert await sandbox.send(out_trade_no) == "success"  # the notice, a day late
    assert await snapshot(core) == settled


@pytest.mark.parametrize("first", ["window", "wechatpay"])
async def test_a_bill_paid_elsewhere_first_refunds_the_alipay_money(world, first):
    core, sandbox = world.core, world.sandbox
    bill_no, token = await issue_bill(core, ZHANG_WEI, 4200)
    url, out_trade_no = await world.cashier(token)  # the payer opened Alipay, then paid another way
    if first == "window":
        await pay_at_hospital(core, "H1", bill_no, {"payment_no": "W1", "channel": "window", "amount_fen": 4200})
    else:
        trade, _ = await open_trade(core, token, "wechatpay", payer_openid="o-payer")
        await settle_trade(core, "wechatpay", trade.out_trade_no, "4200000000202603020000000001", 4200)
    await world.pay(url)
    await sandbox.wait_deliveries()
    assert sandbox.answers == [(out_trade_no, "success")]

    bill = await one(core, Bill, Bill.bill_no == bill_no)
    assert (bill.status, bill.paid_fen) == ("paid", 4200)
    payments = {p.channel: (p.amount_fen, p.applied_fen) for p in await all_of(core, Payment)}
    assert payments == {first: (4200, 4200), "alipay": (4200, 0)}
    refund = await one(core, Refund)
    assert (refund.amount_fen, refund.reason, refund.status) == (4200, "already_paid", "pending")

    reconcile = Reconciler(core, {"alipay": world.alipay})
    assert await reconcile() == 1
    assert (await one(core, Refund)).status == "done"
    request_no = out_refund_no(out_trade_no, refund.id)
    assert (sandbox.trades[out_trade_no].refunds, sandbox.trades[out_trade_no].status) == ({request_no: 4200}, "TRADE_CLOSED")
    assert await reconcile() == 0
    again = GatewayRefund(refund.id, "alipay", out_trade_no, request_no, None, 4200, 4200, "already_paid")
    assert await world.alipay.refund(again) == "done"  # a resend refunds nothing more
    assert sandbox.trades[out_trade_no].refunds == {request_no: 4200}


async def test_an_unpaid_trade_closes_at_its_time_expire(world, clock):
    core = world.core
    bill_no, token = await issue_bill(core, ZHANG_WEI, 600)
    url, out_trade_no = await world.cashier(token)
    pay_button = await world.open(url)
    clock.advance(minutes=31)
    await world.press(pay_button, status=400)
    assert await world.alipay.query(out_trade_no) == GatewayTrade("closed")
    assert await Reconciler(core, {"alipay": world.alipay})() == 0
    assert (await one(core, Trade, Trade.out_trade_no == out_trade_no)).status == "closed"
    assert (await one(core, Bill, Bill.bill_no == bill_no)).status == "open"


async def test_query_and_refund_answers(world):
    core, sandbox, alipay = world.core, world.sandbox, world.alipay
    assert await alipay.query("XY260302NEVERSEEN0000") == GatewayTrade("unpaid")
    _, token = await issue_bill(core, ZHANG_WEI, 1999)
    url, out_trade_no = await world.cashier(token)
    pay_button = await world.open(url)
    assert await alipay.query(out_trade_no) == GatewayTrade("unpaid")
    await world.press(pay_button)
    trade = sandbox.trades[out_trade_no]
    assert await alipay.query(out_trade_no) == GatewayTrade("paid", trade.trade_no, 1999, trade.paid_at)

    too_much = GatewayRefund(1, "alipay", out_trade_no, f"{out_trade_no}R1", None, 2000, 2000, "overpaid")
    assert await alipay.refund(too_much) == "failed"  # Alipay's signed refusal: a person must look
    part = GatewayRefund(2, "alipay", out_trade_no, f"{out_trade_no}R2", None, 999, 1999, "item_abandoned")
    assert await alipay.refund(part) == "done"
    assert await alipay.refund(GatewayRefund(**{**vars(part), "refund_fen": 998})) == "failed"  # same number, other amount
    assert (trade.refunds, trade.status) == ({f"{out_trade_no}R2": 999}, "TRADE_SUCCESS")
    assert await alipay.query(out_trade_no) == GatewayTrade("paid", trade.trade_no, 1999, trade.paid_at)


async def test_a_request_the_gateway_cannot_verify_is_an_error_to_retry(world):
    alipay = world.alipay
    stranger = Alipay(AlipayConfig(**{**vars(alipay.config), "app_private_key": private_pem(new_key())}), alipay.http, alipay.clock)
    with pytest.raises(AlipayError) as refused:
        await stranger.query("XY260302NEVERSEEN0000")
    assert (refused.value.sub_code, refused.value.signed) == ("isv.invalid-signature", False)
    refund = GatewayRefund(1, "alipay", "XY260302NEVERSEEN0000", "XY260302NEVERSEEN0000R1", None, 100, 100, "overpaid")
    with pytest.raises(AlipayError):  # unsigned: never taken for a final refusal
        await stranger.refund(refund)
    utc_as_beijing = Alipay(alipay.config, alipay.http, FixedClock(alipay.clock.now() - timedelta(hours=8)))
    with pytest.raises(AlipayError) as refused:
        await utc_as_beijing.query("XY260302NEVERSEEN0000")
    assert refused.value.sub_code == "isv.invalid-timestamp"
    elsewhere = Alipay(AlipayConfig(**{**vars(alipay.config), "gateway": "http://127.0.0.1:9/gateway.do"}), alipay.http, alipay.clock)
    with pytest.raises(AlipayError):
        await elsewhere.query("XY260302NEVERSEEN0000")


def test_a_response_verifies_over_its_exact_text_only():
    key = new_key()
    node = '{"code":"10000","msg":"Success","out_trade_no":"XY1","trade_status":"TRADE_SUCCESS","url":"https:\\/\\/x"}'
    sign = base64.b64encode(key.sign(node.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    text = f'{{"alipay_trade_query_response":{node},"sign":"{sign}"}}'
    assert verified_response(text, "alipay.trade.query", public_pem(key))["url"] == "https://x"
    reserialised = json.dumps({"alipay_trade_query_response": json.loads(node), "sign": sign}, separators=(",", ":"))
    for forged, why in ((reserialised, "the slashes unescaped"), (text, "another key"), (text.replace("XY1", "XY2"), "edited")):
        with pytest.raises(AlipayError):
            verified_response(forged, "alipay.trade.query", public_pem(new_key() if why == "another key" else key))
    with pytest.raises(AlipayError):
        verified_response('{"alipay_trade_refund_response":{"code":"10000"},"sign":"x"}', "alipay.trade.query", public_pem(key))


@pytest.mark.parametrize("text, fen", [("12.34", 1234), ("0.01", 1), ("100", 10000), ("100.5", 10050), ("0.10", 10)])
def test_yuan_to_fen_is_exact(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["12.345", "-1.00", "1e3", "01.00", " 1.00", "1,00", "", "NaN", "１.00", "12."])
def test_yuan_to_fen_refuses_anything_else(text):
    with pytest.raises(ValueError):
        yuan_to_fen(text)


async def test_sandbox_mode_serves_the_gateway_inside_the_app(make_core, clock, aiohttp_server, unused_tcp_port):
    core = await make_core("beijing-shijingshan")
    await enrol(core, ZHANG_WEI)
    bill_no, token = await issue_bill(core, ZHANG_WEI, 300)
    base = f"http://127.0.0.1:{unused_tcp_port}"
    app = build_app(core, background=False)
    app[ALIPAY_CONFIG], sandbox = sandbox_merchant(clock=clock, notify_url=base + "/notify/alipay",
                                                   gateway=f"{base}{MOUNT}/gateway.do")
    app.add_subapp(MOUNT, sandbox.app())
    await aiohttp_server(app, port=unused_tcp_port)
    async with aiohttp.ClientSession() as browser:
        world = World(core, sandbox, app[ALIPAY], base, browser)
        url, out_trade_no = await world.cashier(token)
        assert url.startswith(f"{base}/sandbox/alipay/gateway.do?")
        await world.pay(url)
        await sandbox.wait_deliveries()
    assert sandbox.answers == [(out_trade_no, "success")]
    assert (await one(core, Bill, Bill.bill_no == bill_no)).status == "paid"


def test_requests_are_signed_byte_for_byte_as_the_sdk_signs_them(clock):
    key = new_key()
    config = AlipayConfig(app_id=APP_ID, app_private_key=private_pem(key), alipay_public_key=public_pem(new_key()),
                          notify_url="https://xinyi.example/notify/alipay")
    url = Alipay(config, None, clock).wap_pay_url(out_trade_no="XY1", amount_fen=1, subject="信医账单 B1",
                                                  expires_at=clock.now(), return_url="https://xinyi.example/pay/t")
    params = dict(parse_qsl(urlsplit(url).query))
    pkcs1 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()).decode()
    assert params["sign"] == sign_with_rsa2(pkcs1, get_sign_content({k: v for k, v in params.items() if k != "sign"}), "utf-8")


def test_config_from_settings_reads_the_key_files(tmp_path, clock):
    app_key, alipay_key = new_key(), new_key()
    (tmp_path / "app.pem").write_text(private_pem(app_key))  # PKCS#8, as Alipay's Java tool writes it
    bare = "".join(public_pem(alipay_key).splitlines()[1:-1])  # the bare base64 Alipay's console shows
    (tmp_path / "alipay.pem").write_text(bare)
    settings = Settings(secret_key="s" * 32, sandbox=False, public_url="https://xinyi.example", alipay_appid=APP_ID,
                        alipay_private_key=tmp_path / "app.pem", alipay_public_key=tmp_path / "alipay.pem")
    config = AlipayConfig.from_settings(settings)
    assert (config.app_id, config.notify_url, config.gateway) == (
        APP_ID, "https://xinyi.example/notify/alipay", "https://openapi.alipay.com/gateway.do")
    assert Alipay(config, None, clock).alipay_public_key == public_pem(alipay_key)
    assert AlipayConfig.from_settings(Settings(secret_key="s" * 32, sandbox=True)) is None
    with pytest.raises(ConfigError, match="XINYI_ALIPAY_PUBLIC_KEY"):
        AlipayConfig.from_settings(Settings(secret_key="s" * 32, sandbox=False, alipay_appid=APP_ID,
                                            alipay_private_key=tmp_path / "app.pem"))
    (tmp_path / "broken.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="XINYI_ALIPAY_PRIVATE_KEY"):
        AlipayConfig.from_settings(Settings(secret_key="s" * 32, sandbox=False, alipay_appid=APP_ID,
                                            alipay_private_key=tmp_path / "broken.pem", alipay_public_key=tmp_path / "alipay.pem"))


@pytest.mark.parametrize("body", [b"out_trade_no=XY\xff\xfe&sign=x", b"\xe4\xbd"])
async def test_a_notice_that_is_not_utf8_is_answered_failure(world, body):
    before = await snapshot(world.core)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    async with world.browser.post(f"{world.app_url}/notify/alipay", data=body, headers=headers) as response:
        assert (response.status, await response.text()) == (200, "failure")
    assert await snapshot(world.core) == before


async def test_a_trade_abandoned_on_a_bill_paid_the_other_way_is_asked_about_once(world, clock):
    core = world.core
    bill_no, token = await issue_bill(core, ZHANG_WEI, 4200)
    _, abandoned = await world.cashier(token)  # opened Alipay, left it, paid with WeChat Pay
    trade, _ = await open_trade(core, token, "wechatpay", payer_openid="o-payer")
    await settle_trade(core, "wechatpay", trade.out_trade_no, "4200000000202603020000000002", 4200)
    asked: list[str] = []

    class Counting:
        async def query(self, out_trade_no):
            asked.append(out_trade_no)
            return await world.alipay.query(out_trade_no)

        async def refund(self, refund):
            return await world.alipay.refund(refund)

    reconcile = Reconciler(core, {"alipay": Counting()})
    clock.advance(minutes=4)  # past the notice's grace: the sweep asks
    for _ in range(5):  # the sandbox sweeps every 2 s
        assert await reconcile() == 0
    assert asked == [abandoned]  # once, not every sweep until the trade's 30 minutes are up
    assert (await one(core, Trade, Trade.out_trade_no == abandoned)).status == "closed"
    assert (await one(core, Bill, Bill.bill_no == bill_no)).status == "paid"
