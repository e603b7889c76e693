"""WeChat Pay v3 end to end: the xinyi app and the sandbox gateway as two real HTTP servers
on loopback, real RSA and AES-GCM keys made here, real SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import re
from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import unused_port
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from sqlalchemy import select

from billing import visits
from billing.members import enrol
from billing.payments import pay_at_hospital
from billing.sweep import sweep
from billing.trades import TRADE_TTL, open_trade
from bot.app import build_app
from bot.config import ConfigError, load_settings
from bot.reconcile import Reconciler
from bot.sandbox.wechatpay_gateway import Delivery, Order, new_rsa_key, sandbox_merchant
from bot.wechatpay import WECHATPAY, WECHATPAY_CONFIG, WechatPay, WechatPayConfig, WechatPayError, jsapi_checkout, mask_openid
from storage.models import Bill, CreditLine, Member, Payment, Refund, Trade

APPID = "wx2421b1c4370ec43b"
PATIENT = "110105198503120012"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
LIMIT_FEN = 200000
SELF_PAY_FEN = 3000


@dataclasses.dataclass
class State:
    bill: Bill
    payments: list[Payment]
    trades: list[Trade]
    refunds: list[Refund]
    available_fen: int
    member_status: str


@dataclasses.dataclass
class World:
    core: object
    clock: object
    config: WechatPayConfig
    gateway: object
    gateway_url: str
    wechatpay: WechatPay
    reconcile: Reconciler
    bill_no: str
    token: str

    async def checkout(self) -> tuple[dict[str, str], Order]:
        """The cashier page's WeChat Pay step: a trade, a prepay, the JSAPI parameters."""
        params = await jsapi_checkout(self.core, self.wechatpay, self.token, OPENID)
        prepay_id = params["package"].removeprefix("prepay_id=")
        return params, next(o for o in self.gateway.orders.values() if o.prepay_id == prepay_id)

    async def paid_unnoticed(self) -> Order:
        """The payer paid in WeChat, and the notice has not come (yet)."""
        _, order = await self.checkout()
        self.gateway.pay(order.prepay_id, notify=False)
        return order

    async def state(self) -> State:
        async with self.core.db.transaction() as session:
            bill = await session.scalar(select(Bill).where(Bill.bill_no == self.bill_no))
            payments = list(await session.scalars(select(Payment).where(Payment.bill_id == bill.id).order_by(Payment.id)))
            trades = list(await session.scalars(select(Trade).where(Trade.bill_id == bill.id).order_by(Trade.id)))
            refunds = list(await session.scalars(select(Refund).where(Refund.bill_id == bill.id).order_by(Refund.id)))
            line = await session.get(CreditLine, bill.line_id)
            member_status = await session.scalar(select(Member.status).where(Member.id == bill.payer_id))
        return State(bill, payments, trades, refunds, line.limit_fen - line.used_fen, member_status)


async def issued_bill(make_core) -> tuple[object, dict]:
    """An enrolled patient's visit at H1, charged, split and checked out: the hospital's checkout answer."""
    core = await make_core("beijing-shijingshan")
    await enrol(core, openid="o-zhang", name="张伟", id_number=PATIENT, phone="13812345678",
                consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    await visits.open_visit(core, "H1", {"visit_no": "V1", "id_number": PATIENT, "department": "内科",
                                         "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, "H1", "V1", {"charge_no": "C1", "category": "exam", "name": "血常规",
                                               "amount_fen": 12000, "prepaid": False})
    return core, await visits.checkout(core, "H1", "V1", {"items": [
        {"charge_no": "C1", "insurance_fen": 7000, "personal_account_fen": 2000, "self_pay_fen": SELF_PAY_FEN}]})


@pytest.fixture
async def world(make_core, clock, aiohttp_server):
    core, bill = await issued_bill(make_core)
    gateway_port, xinyi_port = unused_port(), unused_port()
    config, gateway = sandbox_merchant(clock=clock, appid=APPID, api_base=f"http://127.0.0.1:{gateway_port}",
                                       notify_url=f"http://127.0.0.1:{xinyi_port}/notify/wechatpay",
                                       retry_delays_s=(0.05, 0.05))
    await aiohttp_server(gateway.app(), port=gateway_port)
    app = build_app(core, background=False)
    app[WECHATPAY_CONFIG] = config
    await aiohttp_server(app, port=xinyi_port)
    return World(core, clock, config, gateway, f"http://127.0.0.1:{gateway_port}", app[WECHATPAY],
                 Reconciler(core, {"wechatpay": app[WECHATPAY]}), bill["bill_no"], bill["pay_url"].rsplit("/", 1)[1])


def merchant_signed(config: WechatPayConfig, message: str, signature: str) -> bool:
    try:
        config.private_key.public_key().verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except Exception:
        return False
    return True


async def test_a_bill_from_hospital_charges_to_paid_through_wechatpay(world, caplog):
    caplog.set_level(logging.INFO)
    before = await world.state()
    assert (before.bill.status, before.available_fen) == ("open", LIMIT_FEN - SELF_PAY_FEN)

    params, order = await world.checkout()
    assert (params["appId"], params["signType"], order.total_fen, order.openid) == (APPID, "RSA", SELF_PAY_FEN, OPENID)
    assert merchant_signed(world.config, f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n",
                           params["paySign"])
    async with aiohttp.ClientSession() as http:  # the payer confirms in WeChat
        async with http.post(f"{world.gateway_url}/sandbox/pay", json=params) as response:
            assert (response.status, (await response.json())["err_msg"]) == (200, "get_brand_wcpay_request:ok")
    await world.gateway.notices_sent()

    assert world.gateway.deliveries == [Delivery(order.out_trade_no, 204)]
    after = await world.state()
    assert (after.bill.status, after.bill.paid_fen, after.available_fen) == ("paid", SELF_PAY_FEN, LIMIT_FEN)
    assert [(p.channel, p.payment_no, p.gateway_txn_id, p.applied_fen) for p in after.payments] == [
        ("wechatpay", order.out_trade_no, order.transaction_id, SELF_PAY_FEN)]
    assert [(t.status, t.paid_at) for t in after.trades] == [("paid", order.success_time)]
    assert OPENID not in caplog.text and PATIENT not in caplog.text and mask_openid(OPENID) in caplog.text


async def test_requests_carry_the_v3_authorization_and_a_forged_signer_is_refused(world):
    body = '{"a":1}'
    header = world.wechatpay.authorization("POST", "/v3/pay/transactions/jsapi", body)
    schema, _, rest = header.partition(" ")
    fields = dict(re.findall(r'(\w+)="([^"]*)"', rest))
    assert schema == "WECHATPAY2-SHA256-RSA2048"
    assert fields.keys() == {"mchid", "nonce_str", "signature", "timestamp", "serial_no"}
    assert (fields["mchid"], fields["serial_no"]) == (world.config.mchid, world.config.serial_no)
    message = f"POST\n/v3/pay/transactions/jsapi\n{fields['timestamp']}\n{fields['nonce_str']}\n{body}\n"
    assert merchant_signed(world.config, message, fields["signature"])

    impostor = WechatPay(dataclasses.replace(world.config, private_key=new_rsa_key()), world.wechatpay.http, world.clock)
    with pytest.raises(WechatPayError) as refused:
        await impostor.query("XY0000000000000001")
    assert (refused.value.status, refused.value.code) == (401, "SIGN_ERROR")


async def test_an_answer_not_signed_by_the_platform_key_is_not_trusted(world):
    trusting_another = WechatPay(dataclasses.replace(world.config, platform_public_key=new_rsa_key().public_key()),
                                 world.wechatpay.http, world.clock)
    order = await world.paid_unnoticed()
    with pytest.raises(WechatPayError, match="not WeChat Pay's"):
        await trusting_another.query(order.out_trade_no)
    assert (await world.wechatpay.query(order.out_trade_no)).state == "paid"


async def test_duplicate_and_concurrent_notices_apply_once(world):
    order = await world.paid_unnoticed()
    statuses = await asyncio.gather(*(world.gateway.deliver(order) for _ in range(5)))
    assert statuses == [204] * 5
    assert await world.gateway.deliver(order) == 204
    state = await world.state()
    assert (state.bill.status, state.bill.paid_fen, len(state.payments), state.available_fen) == ("paid", SELF_PAY_FEN, 1, LIMIT_FEN)


async def test_a_notice_after_the_query_settled_the_trade_changes_nothing(world):
    order = await world.paid_unnoticed()
    assert await world.reconcile() == 0  # younger than the grace period: the notice may still come
    world.clock.advance(minutes=5)
    assert await world.reconcile() == 1
    settled = await world.state()
    assert (settled.bill.status, [p.gateway_txn_id for p in settled.payments]) == ("paid", [order.transaction_id])
    assert await world.gateway.deliver(order) == 204
    assert await world.reconcile() == 0
    assert len((await world.state()).payments) == 1


def _forged(world, order: Order, forgery: str):
    now = int(world.clock.now().timestamp())
    notice = world.gateway.notice
    if forgery == "tampered_body":
        headers, body = notice(order)
        return headers, body.replace(b'"summary": "', b'"summary": "x')
    return {
        "other_signing_key": lambda: notice(order, key=new_rsa_key()),
        "unknown_key_id": lambda: notice(order, key_id="PUB_KEY_ID_0114232134912410000000000000"),
        "stale_timestamp": lambda: notice(order, timestamp=now - 301),
        "future_timestamp": lambda: notice(order, timestamp=now + 301),
        "other_apiv3_key": lambda: notice(order, apiv3_key=b"0123456789abcdef0123456789abcdef"),
        "wrong_amount": lambda: notice(order, transaction={"amount": {"total": order.total_fen + 1, "currency": "CNY"}}),
        "wrong_mchid": lambda: notice(order, transaction={"mchid": "1900000999"}),
        "wrong_appid": lambda: notice(order, transaction={"appid": "wx0000000000000000"}),
        "unknown_out_trade_no": lambda: notice(order, transaction={"out_trade_no": "XY260302UNKNOWN00000"}),
        "not_paid": lambda: notice(order, transaction={"trade_state": "NOTPAY"}),
    }[forgery]()


@pytest.mark.parametrize("forgery, status", [
    ("tampered_body", 401), ("other_signing_key", 401), ("unknown_key_id", 401), ("stale_timestamp", 401),
    ("future_timestamp", 401), ("other_apiv3_key", 400), ("wrong_amount", 409), ("wrong_mchid", 400),
    ("wrong_appid", 400), ("unknown_out_trade_no", 404), ("not_paid", 400),
])
async def test_forged_or_mismatched_notices_change_nothing(world, caplog, forgery, status):
    order = await world.paid_unnoticed()
    headers, body = _forged(world, order, forgery)
    async with aiohttp.ClientSession() as http:
        async with http.post(order.notify_url, data=body, headers=headers) as response:
            answer = (response.status, await response.json())
    assert answer[0] == status and answer[1]["code"] == "FAIL" and answer[1]["message"]
    state = await world.state()
    assert (state.bill.status, state.payments, [t.status for t in state.trades]) == ("open", [], ["created"])
    assert "refused" in caplog.text and OPENID not in caplog.text
    assert await world.gateway.deliver(order) == 204  # the genuine notice still settles the bill
    assert (await world.state()).bill.status == "paid"


@pytest.mark.parametrize("reconciled", [True, False])
async def test_a_late_notice_never_gets_the_payer_suspended(world, reconciled):
    world.clock.advance(hours=47)  # the bill is due 48 h after leaving
    order = await world.paid_unnoticed()
    world.clock.advance(hours=2)
    report = await sweep(world.core, reconcile=world.reconcile if reconciled else None)
    state = await world.state()
    if reconciled:
        assert (report.reconciled, state.bill.status, state.member_status) == (1, "paid", "active")
    else:  # what the query prevents (in Beijing the insurer advances an overdue bill at once)
        assert (state.bill.status, state.member_status) == ("advanced", "suspended")
    assert await world.gateway.deliver(order) == 204
    assert len((await world.state()).payments) == 1


async def test_paid_at_the_window_and_through_wechatpay_keeps_one_and_refunds_the_other(world):
    order = await world.paid_unnoticed()
    await pay_at_hospital(world.core, "H1", world.bill_no, {"payment_no": "W1", "channel": "window", "amount_fen": SELF_PAY_FEN})
    assert await world.gateway.deliver(order) == 204
    state = await world.state()
    assert [(p.channel, p.amount_fen, p.applied_fen) for p in state.payments] == [
        ("window", SELF_PAY_FEN, SELF_PAY_FEN), ("wechatpay", SELF_PAY_FEN, 0)]
    assert [(r.amount_fen, r.reason, r.status) for r in state.refunds] == [(SELF_PAY_FEN, "already_paid", "pending")]

    assert await world.reconcile() == 1
    [refund] = world.gateway.refunds.values()
    assert (refund["out_trade_no"], refund["amount"]["refund"], refund["status"]) == (order.out_trade_no, SELF_PAY_FEN, "SUCCESS")
    assert await world.reconcile() == 0
    state = await world.state()
    assert [r.status for r in state.refunds] == ["done"]
    assert (state.bill.status, state.bill.paid_fen, order.refunded_fen, len(world.gateway.refunds)) == ("paid", SELF_PAY_FEN, SELF_PAY_FEN, 1)


async def test_a_refund_still_processing_is_asked_again_and_refunded_once(world):
    order = await world.paid_unnoticed()
    await pay_at_hospital(world.core, "H1", world.bill_no, {"payment_no": "W1", "channel": "window", "amount_fen": SELF_PAY_FEN})
    await world.gateway.deliver(order)
    world.gateway.refund_status = "PROCESSING"
    assert await world.reconcile() == 0
    assert await world.reconcile() == 0
    assert [r.status for r in (await world.state()).refunds] == ["pending"]
    world.gateway.finish_refunds()
    assert await world.reconcile() == 1
    assert [r.status for r in (await world.state()).refunds] == ["done"]
    assert (order.refunded_fen, len(world.gateway.refunds)) == (SELF_PAY_FEN, 1)


async def test_reconciliation_closes_trades_nobody_paid(world):
    _, prepaid = await world.checkout()
    never_prepaid, _ = await open_trade(world.core, world.token, "wechatpay", payer_openid=OPENID)
    world.clock.advance(minutes=10)
    assert await world.reconcile() == 0
    assert [t.status for t in (await world.state()).trades] == ["created", "created"]
    world.clock.advance(TRADE_TTL + timedelta(minutes=5))
    assert await world.reconcile() == 0
    assert [(t.out_trade_no, t.status) for t in (await world.state()).trades] == [
        (prepaid.out_trade_no, "closed"), (never_prepaid.out_trade_no, "closed")]


async def test_the_bridge_refuses_a_bad_pay_sign(world):
    params, order = await world.checkout()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{world.gateway_url}/sandbox/pay", json={**params, "nonceStr": "0" * 32}) as response:
            assert (response.status, (await response.json())["err_msg"]) == (400, "get_brand_wcpay_request:fail")
    assert (order.trade_state, world.gateway.deliveries) == ("NOTPAY", [])


async def test_the_sandbox_retries_a_notice_until_it_is_answered(world, aiohttp_server):
    answers = iter([500, 503, 204])

    async def flaky(request: web.Request) -> web.Response:
        return web.Response(status=next(answers))

    merchant = web.Application()
    merchant.router.add_post("/notify", flaky)
    server = await aiohttp_server(merchant)
    _, order = await world.checkout()
    order.notify_url = str(server.make_url("/notify"))
    world.gateway.pay(order.prepay_id)
    await world.gateway.notices_sent()
    assert [d.status for d in world.gateway.deliveries] == [500, 503, 204]


def test_config_from_settings(tmp_path):
    merchant, platform = new_rsa_key(), new_rsa_key()
    (tmp_path / "key.pem").write_bytes(merchant.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "pub.pem").write_bytes(platform.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    env = {"XINYI_SANDBOX": "1", "XINYI_SECRET_KEY": "s" * 32, "XINYI_DATA_DIR": str(tmp_path),
           "XINYI_PUBLIC_URL": "https://pay.example.org", "XINYI_WECHAT_APPID": APPID}
    assert WechatPayConfig.from_settings(load_settings(env)) is None
    env |= {"XINYI_WECHATPAY_MCHID": "1900000109", "XINYI_WECHATPAY_SERIAL_NO": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            "XINYI_WECHATPAY_PRIVATE_KEY": str(tmp_path / "key.pem"), "XINYI_WECHATPAY_APIV3_KEY": "k" * 32,
            "XINYI_WECHATPAY_PUBLIC_KEY": str(tmp_path / "pub.pem"), "XINYI_WECHATPAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0114"}
    config = WechatPayConfig.from_settings(load_settings(env))
    assert (config.notify_url, config.api_base, config.appid) == (
        "https://pay.example.org/notify/wechatpay", "https://api.mch.weixin.qq.com", APPID)
    with pytest.raises(ConfigError, match="^XINYI_WECHATPAY_PUBLIC_KEY_ID:"):
        WechatPayConfig.from_settings(load_settings({**env, "XINYI_WECHATPAY_PUBLIC_KEY_ID": ""}))
    with pytest.raises(ConfigError, match="^XINYI_WECHATPAY_APIV3_KEY:"):
        WechatPayConfig.from_settings(load_settings({**env, "XINYI_WECHATPAY_APIV3_KEY": "short"}))
    with pytest.raises(ConfigError, match="^XINYI_WECHATPAY_PRIVATE_KEY:"):
        WechatPayConfig.from_settings(load_settings({**env, "XINYI_WECHATPAY_PRIVATE_KEY": str(tmp_path / "pub.pem")}))


async def test_the_sandbox_mounted_in_the_app_as_in_sandbox_mode(make_core, clock, aiohttp_server):
    core, bill = await issued_bill(make_core)
    base = f"http://127.0.0.1:{unused_port()}"
    config, gateway = sandbox_merchant(clock=clock, appid=APPID, api_base=f"{base}/sandbox/wechatpay",
                                       notify_url=f"{base}/notify/wechatpay")
    app = build_app(core, background=False)
    app[WECHATPAY_CONFIG] = config
    app.add_subapp("/sandbox/wechatpay", gateway.app())
    await aiohttp_server(app, port=int(base.rsplit(":", 1)[1]))
    params = await jsapi_checkout(core, app[WECHATPAY], bill["pay_url"].rsplit("/", 1)[1], OPENID)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/sandbox/wechatpay/sandbox/pay", json=params) as response:
            assert response.status == 200
    await gateway.notices_sent()
    assert [d.status for d in gateway.deliveries] == [204]
    async with core.db.transaction() as session:
        assert await session.scalar(select(Bill.status).where(Bill.bill_no == bill["bill_no"])) == "paid"


@pytest.mark.parametrize("header, value", [
    ("Wechatpay-Timestamp", "1" * 5000),  # int() refuses over 4,300 digits
    ("Wechatpay-Timestamp", "²"),
    ("Wechatpay-Nonce", "随机串"),
    ("Wechatpay-Serial", "ＰＵＢ"),
])
async def test_a_notice_with_a_malformed_signing_header_is_refused_in_the_v3_form(world, header, value):
    order = await world.paid_unnoticed()
    headers, body = world.gateway.notice(order)
    async with aiohttp.ClientSession() as http:
        async with http.post(order.notify_url, data=body, headers={**headers, header: value}) as response:
            answer = (response.status, await response.json())
    assert answer[0] == 401 and answer[1]["code"] == "FAIL" and answer[1]["message"]
    assert (await world.state()).payments == []
