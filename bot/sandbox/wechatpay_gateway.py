"""A sandbox WeChat Pay (merchant API v3) to run on loopback, with keys generated locally.

It verifies the merchant's signed requests, answers JSAPI prepay, query by out_trade_no
and refund with answers signed by its own platform key (public key mode, `PUB_KEY_ID_...`),
and, once a prepay is paid, POSTs a signed, AES-256-GCM encrypted TRANSACTION.SUCCESS
notice to the order's notify_url until it gets 200 or 204, on WeChat Pay's schedule (15 s,
15 s, 30 s, 3 m, ... 24 h 4 m in all) or a faster one. Paying is `POST /sandbox/pay` with
the JSAPI parameters, as WeixinJSBridge would (the paySign is checked), or `pay()`.
Tests also build notices themselves (`notice()`), forge them, and `deliver()` them at will.

The signing code here is written apart from bot/wechatpay.py on purpose: a fake that
reused the client's code would agree with the client's mistakes.
"""
from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billing.clock import Clock
from billing.validate import loads_json, whole_number
from bot.wechatpay import WechatPayConfig

NOTICE_RETRY_DELAYS_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)
MAX_SKEW_S = 300
CST = timezone(timedelta(hours=8))
AUTHORIZATION = re.compile(r'^WECHATPAY2-SHA256-RSA2048 (.+)$')
AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')
OUT_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{6,64}$")


def _time(at: datetime) -> str:
    return at.astimezone(CST).isoformat(timespec="seconds")


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Order:
    appid: str
    mchid: str
    description: str
    out_trade_no: str
    notify_url: str
    total_fen: int
    openid: str
    time_expire: datetime
    prepay_id: str
    notice_id: str
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: datetime | None = None
    refunded_fen: int = 0


@dataclass(frozen=True)
class Delivery:
    out_trade_no: str
    status: int | None  # None: the notify URL could not be reached


class Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class SandboxWechatPay:
    mchid: str
    appid: str
    merchant_serial_no: str
    merchant_public_key: rsa.RSAPublicKey = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    clock: Clock
    platform_key: rsa.RSAPrivateKey = field(default_factory=new_rsa_key, repr=False)
    public_key_id: str = field(default_factory=lambda: "PUB_KEY_ID_" + secrets.token_hex(16).upper())
    retry_delays_s: tuple[float, ...] = NOTICE_RETRY_DELAYS_S
    refund_status: str = "SUCCESS"  # what a new refund answers; PROCESSING until finish_refunds()
    orders: dict[str, Order] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    _tasks: set[asyncio.Task] = field(default_factory=set, repr=False)
    _http: aiohttp.ClientSession | None = field(default=None, repr=False)

    # --- the server ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/pay/transactions/jsapi", self._merchant_api(self._prepay))
        app.router.add_get("/v3/pay/transactions/out-trade-no/{out_trade_no}", self._merchant_api(self._query))
        app.router.add_post("/v3/refund/domestic/refunds", self._merchant_api(self._refund))
        app.router.add_post("/sandbox/pay", self._pay_from_bridge)
        app.cleanup_ctx.append(self._notice_client)
        return app

    async def _notice_client(self, app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            self._http = http
            yield
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._http = None

    def _merchant_api(self, handler: Callable[[web.Request, dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]):
        """A v3 endpoint: the merchant's signature checked first, every answer signed."""
        async def endpoint(request: web.Request) -> web.Response:
            body = await request.read()
            try:
                self._authenticate(request, body)
                payload = json.loads(body) if body else {}
                status, answer = await handler(request, payload)
            except Refusal as refusal:
                status, answer = refusal.status, {"code": refusal.code, "message": refusal.message}
            except ValueError:
                status, answer = 400, {"code": "PARAM_ERROR", "message": "the body is not JSON"}
            raw = json.dumps(answer, ensure_ascii=False).encode()
            return web.Response(status=status, body=raw, headers={**self.signed_headers(raw), "Request-ID": secrets.token_hex(16)})

        return endpoint

    def _authenticate(self, request: web.Request, body: bytes) -> None:
        match = AUTHORIZATION.match(request.headers.get("Authorization", ""))
        fields = dict(AUTH_FIELD.findall(match.group(1))) if match else {}
        if not {"mchid", "nonce_str", "signature", "timestamp", "serial_no"} <= fields.keys():
            raise Refusal(401, "SIGN_ERROR", "Authorization is missing or not WECHATPAY2-SHA256-RSA2048")
        if fields["mchid"] != self.mchid or fields["serial_no"] != self.merchant_serial_no:
            raise Refusal(401, "SIGN_ERROR", "unknown mchid or certificate serial_no")
        timestamp = whole_number(fields["timestamp"], 12)
        if timestamp is None or abs(self.clock.now().timestamp() - timestamp) > MAX_SKEW_S:
            raise Refusal(401, "SIGN_ERROR", "the request timestamp is stale")
        message = f"{request.method}\n{request.raw_path}\n{fields['timestamp']}\n{fields['nonce_str']}\n{body.decode()}\n"
        if not self._merchant_signed(message, fields["signature"]):
            raise Refusal(401, "SIGN_ERROR", "signature mismatch")

    def _merchant_signed(self, message: str, signature: str) -> bool:
        try:
            self.merchant_public_key.verify(base64.b64decode(signature), message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, ValueError):
            return False
        return True

    def signed_headers(self, body: bytes, *, key: rsa.RSAPrivateKey | None = None, key_id: str | None = None,
                       timestamp: int | None = None) -> dict[str, str]:
        """The platform's signature headers; a test forges with another `key`, `key_id` or `timestamp`."""
        stamp = str(int(self.clock.now().timestamp()) if timestamp is None else timestamp)
        nonce = secrets.token_hex(16)
        message = stamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
        signature = (key or self.platform_key).sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {"Wechatpay-Timestamp": stamp, "Wechatpay-Nonce": nonce, "Wechatpay-Signature": base64.b64encode(signature).decode(),
                "Wechatpay-Serial": key_id or self.public_key_id, "Content-Type": "application/json"}

    # --- the merchant API ------------------------------------------------------------------

    async def _prepay(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            appid, mchid, out_trade_no = body["appid"], body["mchid"], body["out_trade_no"]
            description, notify_url = body["description"], body["notify_url"]
            total, openid = body["amount"]["total"], body["payer"]["openid"]
            time_expire = datetime.fromisoformat(body["time_expire"]) if "time_expire" in body else self.clock.now() + timedelta(days=7)
        except (KeyError, TypeError, ValueError):
            raise Refusal(400, "PARAM_ERROR", "appid, mchid, description, out_trade_no, notify_url, amount.total and payer.openid are required") from None
        if (appid, mchid) != (self.appid, self.mchid):
            raise Refusal(400, "APPID_MCHID_NOT_MATCH", "appid and mchid do not match")
        if not OUT_NO.match(str(out_trade_no)) or len(out_trade_no) > 32 or not isinstance(total, int) or total <= 0:
            raise Refusal(400, "PARAM_ERROR", "out_trade_no or amount.total is invalid")
        if body.get("amount", {}).get("currency", "CNY") != "CNY":
            raise Refusal(400, "PARAM_ERROR", "currency must be CNY")
        order = self.orders.get(out_trade_no)
        if order is not None:
            if order.trade_state != "NOTPAY":
                raise Refusal(400, "ORDERPAID", "该订单已支付")
            if (order.total_fen, order.openid, order.notify_url) != (total, openid, notify_url):
                raise Refusal(400, "INVALID_REQUEST", "201 商户订单号重复")
            return 200, {"prepay_id": order.prepay_id}
        order = Order(appid, mchid, description, out_trade_no, notify_url, total, openid, time_expire,
                      prepay_id=f"wx{self.clock.now():%d%H%M%S}{secrets.token_hex(12)}", notice_id=f"EV-{secrets.token_hex(10)}")
        self.orders[out_trade_no] = order
        return 200, {"prepay_id": order.prepay_id}

    async def _query(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if request.query.get("mchid") != self.mchid:
            raise Refusal(400, "PARAM_ERROR", "mchid is missing or not the caller's")
        order = self.orders.get(request.match_info["out_trade_no"])
        if order is None:
            raise Refusal(404, "ORDER_NOT_EXIST", "订单不存在")
        return 200, self.transaction(order)

    async def _refund(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        try:
            out_trade_no, out_refund_no = body["out_trade_no"], body["out_refund_no"]
            refund_fen, total_fen = body["amount"]["refund"], body["amount"]["total"]
        except (KeyError, TypeError):
            raise Refusal(400, "PARAM_ERROR", "out_trade_no, out_refund_no, amount.refund and amount.total are required") from None
        if body["amount"].get("currency") != "CNY" or not OUT_NO.match(str(out_refund_no)):
            raise Refusal(400, "PARAM_ERROR", "currency must be CNY and out_refund_no well formed")
        order = self.orders.get(out_trade_no)
        if order is None:
            raise Refusal(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.trade_state not in ("SUCCESS", "REFUND"):
            raise Refusal(400, "INVALID_REQUEST", "订单未支付")
        known = self.refunds.get(out_refund_no)
        if known is not None:  # 同一退款单号多次请求只退一笔
            if (known["out_trade_no"], known["amount"]["refund"]) != (out_trade_no, refund_fen):
                raise Refusal(400, "INVALID_REQUEST", "退款单号重复，参数不一致")
            return 200, known
        if total_fen != order.total_fen:
            raise Refusal(400, "INVALID_REQUEST", "订单金额与原订单不一致")
        if not isinstance(refund_fen, int) or not 0 < refund_fen <= order.total_fen - order.refunded_fen:
            raise Refusal(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        order.refunded_fen += refund_fen
        order.trade_state = "REFUND"
        now = _time(self.clock.now())
        refund = {
            "refund_id": f"50{secrets.randbelow(10**27):027d}", "out_refund_no": out_refund_no,
            "transaction_id": order.transaction_id, "out_trade_no": out_trade_no, "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱", "create_time": now, "status": self.refund_status, "funds_account": "AVAILABLE",
            "amount": {"total": order.total_fen, "refund": refund_fen, "payer_total": order.total_fen, "payer_refund": refund_fen,
                       "settlement_total": order.total_fen, "settlement_refund": refund_fen, "discount_refund": 0, "currency": "CNY"},
        }
        if self.refund_status == "SUCCESS":
            refund["success_time"] = now
        self.refunds[out_refund_no] = refund
        return 200, refund

    def finish_refunds(self) -> None:
        for refund in self.refunds.values():
            if refund["status"] == "PROCESSING":
                refund["status"], refund["success_time"] = "SUCCESS", _time(self.clock.now())

    def transaction(self, order: Order) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "appid": order.appid, "mchid": order.mchid, "out_trade_no": order.out_trade_no, "trade_type": "JSAPI",
            "trade_state": order.trade_state, "trade_state_desc": {"NOTPAY": "未支付", "SUCCESS": "支付成功", "REFUND": "转入退款"}[order.trade_state],
            "attach": "", "payer": {"openid": order.openid},
            "amount": {"total": order.total_fen, "currency": "CNY", "payer_currency": "CNY"},
        }
        if order.transaction_id is not None:
            answer |= {"transaction_id": order.transaction_id, "bank_type": "OTHERS", "success_time": _time(order.success_time)}
            answer["amount"]["payer_total"] = order.total_fen
        return answer

    # --- the payer -------------------------------------------------------------------------

    async def _pay_from_bridge(self, request: web.Request) -> web.Response:
        """What WeixinJSBridge's getBrandWCPayRequest does with the cashier's parameters."""
        try:
            params = loads_json(await request.read())
            message = f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
            if params["appId"] != self.appid or params["signType"] != "RSA" or not self._merchant_signed(message, params["paySign"]):
                raise Refusal(400, "SIGN_ERROR", "the paySign does not verify")
            prefix, _, prepay_id = params["package"].partition("=")
            if prefix != "prepay_id":
                raise Refusal(400, "PARAM_ERROR", "package must be prepay_id=...")
            self.pay(prepay_id)
        except Refusal as refusal:
            return web.json_response({"err_msg": "get_brand_wcpay_request:fail", "message": refusal.message}, status=refusal.status)
        except (ValueError, KeyError, TypeError):
            return web.json_response({"err_msg": "get_brand_wcpay_request:fail", "message": "malformed parameters"}, status=400)
        return web.json_response({"err_msg": "get_brand_wcpay_request:ok"})

    def pay(self, prepay_id: str, *, notify: bool = True) -> Order:
        """The payer pays in WeChat; the notice goes out unless `notify=False` (a notice that is late or lost)."""
        order = next((o for o in self.orders.values() if o.prepay_id == prepay_id), None)
        if order is None:
            raise Refusal(404, "ORDER_NOT_EXIST", "no such prepay_id")
        if order.trade_state != "NOTPAY":
            raise Refusal(400, "ORDERPAID", "该订单已支付")
        if self.clock.now() > order.time_expire:
            raise Refusal(400, "ORDER_CLOSED", "订单已过支付期限")
        order.trade_state, order.success_time = "SUCCESS", self.clock.now()
        order.transaction_id = f"4200{self.clock.now():%Y%m%d}{secrets.randbelow(10**16):016d}"
        if notify:
            self.send_notice(order)
        return order

    # --- notices ---------------------------------------------------------------------------

    def notice(self, order: Order, *, transaction: dict[str, Any] | None = None, apiv3_key: bytes | None = None,
               event_type: str = "TRANSACTION.SUCCESS", **signing: Any) -> tuple[dict[str, str], bytes]:
        """A notice of the order as WeChat Pay sends it: `transaction` replaces fields of the
        resource, `apiv3_key` encrypts with another key, `signing` goes to signed_headers()."""
        resource = self.transaction(order) | (transaction or {})
        nonce, associated_data = secrets.token_hex(6), "transaction"
        ciphertext = AESGCM(apiv3_key or self.apiv3_key).encrypt(
            nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), associated_data.encode())
        body = json.dumps({
            "id": order.notice_id, "create_time": _time(self.clock.now()), "resource_type": "encrypt-resource",
            "event_type": event_type, "summary": "支付成功",
            "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                         "ciphertext": base64.b64encode(ciphertext).decode(), "associated_data": associated_data, "nonce": nonce},
        }, ensure_ascii=False).encode()
        return self.signed_headers(body, **signing), body

    async def deliver(self, order: Order, notice: tuple[dict[str, str], bytes] | None = None) -> int | None:
        """POST a notice of the order (a fresh one, or the one given) to its notify_url; the
        merchant's HTTP status, or None when it could not be reached."""
        if self._http is None:
            raise RuntimeError("the sandbox gateway app is not running")
        headers, body = notice or self.notice(order)
        try:
            async with self._http.post(order.notify_url, data=body, headers=headers) as response:
                await response.read()
                status: int | None = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = None
        self.deliveries.append(Delivery(order.out_trade_no, status))
        return status

    def send_notice(self, order: Order) -> None:
        task = asyncio.create_task(self._notify_until_answered(order))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify_until_answered(self, order: Order) -> None:
        for delay in (0, *self.retry_delays_s):
            await asyncio.sleep(delay)
            if await self.deliver(order) in (200, 204):
                return

    async def notices_sent(self) -> None:
        """Wait until every notice in flight was answered or ran out of retries."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def sandbox_merchant(*, clock: Clock, appid: str, notify_url: str, api_base: str, mchid: str = "1900000109",
                     retry_delays_s: tuple[float, ...] = NOTICE_RETRY_DELAYS_S) -> tuple[WechatPayConfig, SandboxWechatPay]:
    """A merchant key pair and an APIv3 key made here, and a gateway that knows them: the sandbox's
    WeChat Pay, for `xinyi serve` in sandbox mode (mount `gateway.app()` under api_base) and for tests."""
    merchant_key = new_rsa_key()
    serial_no = secrets.token_hex(20).upper()
    apiv3_key = secrets.token_hex(16).encode()  # 32 characters, as merchants set it on the platform
    gateway = SandboxWechatPay(mchid=mchid, appid=appid, merchant_serial_no=serial_no, merchant_public_key=merchant_key.public_key(),
                               apiv3_key=apiv3_key, clock=clock, retry_delays_s=retry_delays_s)
    config = WechatPayConfig(mchid=mchid, appid=appid, serial_no=serial_no, private_key=merchant_key, apiv3_key=apiv3_key,
                             platform_public_key=gateway.platform_key.public_key(), platform_public_key_id=gateway.public_key_id,
                             notify_url=notify_url, api_base=api_base)
    return config, gateway
