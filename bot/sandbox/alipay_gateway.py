"""A sandbox Alipay open-platform gateway: the real protocol, with keys generated locally.

Every /gateway.do call must carry the app's valid RSA2 signature. alipay.trade.wap.pay
serves a small cashier page whose pay button completes the trade, sends a signed notice
to notify_url (again on Alipay's schedule until the answer is exactly `success`) and
redirects to return_url; alipay.trade.query and alipay.trade.refund answer signed JSON.
Tests drive it further: lose notices, send them late, repeat or forge them. It is stricter
than Alipay is known to be in one point: a request's `timestamp` must be Beijing time
within 15 minutes of its clock.

It signs and verifies with `cryptography`, independently of the SDK the app uses.
"""
from __future__ import annotations

import asyncio
import base64
import html
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Sequence
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from billing.clock import CHINA_TIME, Clock, SystemClock
from billing.money import fen_to_yuan
from bot.alipay import TIME_FORMAT, AlipayConfig, beijing_time, yuan_to_fen

log = logging.getLogger(__name__)
MOUNT = "/sandbox/alipay"
SANDBOX_APP_ID = "2021000000000000"
SELLER_ID = "2088000000000001"
NOTICE_RETRY_DELAYS_S = (120, 600, 600, 3600, 7200, 21600, 54000)  # after the first try: 8 tries in 25 h
MAX_AMOUNT_FEN = 100_000_000 * 100
MAX_SKEW = timedelta(minutes=15)  # the sandbox's own strictness: `timestamp` must be Beijing time, and now
_NOTICE_TIMEOUT = aiohttp.ClientTimeout(total=10)
_INVALID = {"code": "40002", "msg": "Invalid Arguments"}
_BUSINESS = {"code": "40004", "msg": "Business Failed"}


@dataclass
class SandboxTrade:
    out_trade_no: str
    trade_no: str
    total_fen: int
    subject: str
    notify_url: str
    return_url: str
    created_at: datetime
    expires_at: datetime | None  # time_expire: unpaid by then, the trade closes
    status: str = "WAIT_BUYER_PAY"
    buyer_id: str = ""
    paid_at: datetime | None = None
    refunds: dict[str, int] = field(default_factory=dict)  # out_request_no -> fen


class AlipaySandbox:
    """One merchant app's view of Alipay. `app()` is the aiohttp application to serve."""

    def __init__(self, *, app_id: str, app_public_key: str, clock: Clock | None = None,
                 retry_delays_s: Sequence[float] = NOTICE_RETRY_DELAYS_S) -> None:
        self.app_id = app_id
        self._app_key = serialization.load_pem_public_key(app_public_key.encode("ascii"))
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_key_pem = public_pem(self._key)
        self.clock = clock or SystemClock()
        self.retry_delays_s = tuple(retry_delays_s)
        self.trades: dict[str, SandboxTrade] = {}
        self.deliver_notices = True  # False: notices after payment are lost (the app must reconcile)
        self.answers: list[tuple[str, str]] = []  # (out_trade_no, what notify_url answered), every try
        self._deliveries: set[asyncio.Task] = set()
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/gateway.do", self._gateway)
        app.router.add_route("POST", "/gateway.do", self._gateway)
        app.router.add_post("/cashier/{trade_no}/pay", self._pay)
        app.cleanup_ctx.append(self._session)
        return app

    async def _session(self, _app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=_NOTICE_TIMEOUT) as self._http:
            yield
            for task in self._deliveries:
                task.cancel()
            await asyncio.gather(*self._deliveries, return_exceptions=True)

    # --- notices --------------------------------------------------------------------------

    def notice(self, out_trade_no: str, /, *, signer: rsa.RSAPrivateKey | None = None, **fields: str) -> dict[str, str]:
        """The signed notice Alipay would send now for this trade. `fields` replace or add
        values before signing (a genuine notice that says something else); `signer` signs
        with another key (a forgery)."""
        trade = self.trades[out_trade_no]
        amount = str(fen_to_yuan(trade.total_fen))
        params = {
            "notify_time": self._now(), "notify_type": "trade_status_sync", "notify_id": secrets.token_hex(16),
            "app_id": self.app_id, "charset": "utf-8", "version": "1.0",
            "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no, "trade_status": trade.status,
            "total_amount": amount, "receipt_amount": amount, "buyer_pay_amount": amount, "invoice_amount": amount,
            "point_amount": "0.00", "subject": trade.subject, "buyer_id": trade.buyer_id, "buyer_logon_id": "138****0000",
            "seller_id": SELLER_ID, "gmt_create": _beijing(trade.created_at), "gmt_payment": _beijing(trade.paid_at),
            "fund_bill_list": json.dumps([{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}]),
        }
        params = {name: value for name, value in (params | fields).items() if value}
        params["sign"] = self._sign(sign_content(params, "sign", "sign_type"), signer)
        params["sign_type"] = "RSA2"
        return params

    async def send(self, out_trade_no: str, params: dict[str, str] | None = None) -> str:
        """POST a notice (this trade's current one by default) to its notify_url once; the answer."""
        trade = self.trades[out_trade_no]
        try:
            async with self._http.post(trade.notify_url, data=self.notice(out_trade_no) if params is None else params) as response:
                answer = await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            answer = f"({type(exc).__name__})"
        self.answers.append((out_trade_no, answer))
        return answer

    async def wait_deliveries(self) -> None:
        """Until every notice sent after a payment got `success` or ran out of tries."""
        while self._deliveries:
            await asyncio.gather(*self._deliveries)

    async def _deliver(self, out_trade_no: str) -> None:
        for delay_s in (0, *self.retry_delays_s):
            await asyncio.sleep(delay_s)
            if await self.send(out_trade_no) == "success":
                return
        log.warning("sandbox alipay: notice for %s never acknowledged", out_trade_no)

    # --- the gateway ----------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        params = {name: str(value) for name, value in request.query.items()}
        if request.method == "POST":
            try:
                params.update({name: str(value) for name, value in (await request.post()).items()})
            except ValueError:  # not UTF-8, or a broken multipart body
                return _error_page("the request is not a UTF-8 form")
        method = params.get("method", "")
        refusal, biz = self._check(params)
        if method == "alipay.trade.wap.pay":
            return self._cashier(params, biz) if refusal is None else _error_page(refusal["sub_msg"])
        answer = {"alipay.trade.query": self._query, "alipay.trade.refund": self._refund}.get(method)
        if answer is None:
            return self._respond("error_response", {**_INVALID, "sub_code": "isv.invalid-method", "sub_msg": "不存在的方法名"}, signed=False)
        if refusal is not None:
            return self._respond(method, refusal, signed=False)
        return self._respond(method, answer(biz))

    def _check(self, params: dict[str, str]) -> tuple[dict[str, str] | None, dict[str, Any]]:
        """A refusal node for a request that is not the app's, not signed by it, or malformed."""
        if params.get("app_id") != self.app_id:
            return {**_INVALID, "sub_code": "isv.invalid-app-id", "sub_msg": "无效的AppID参数"}, {}
        if params.get("sign_type") != "RSA2" or params.get("charset", "").lower() != "utf-8":
            return {**_INVALID, "sub_code": "isv.invalid-signature-type", "sub_msg": "无效的签名类型"}, {}
        try:
            self._app_key.verify(base64.b64decode(params.get("sign", ""), validate=True),
                                 sign_content(params, "sign").encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
            biz = json.loads(params.get("biz_content", ""))
        except (InvalidSignature, ValueError):
            return {**_INVALID, "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}, {}
        if not isinstance(biz, dict):
            return {**_INVALID, "sub_code": "isv.invalid-parameter", "sub_msg": "biz_content 不是对象"}, {}
        sent_at = beijing_time(params.get("timestamp"))
        if sent_at is None or abs(sent_at - self.clock.now()) > MAX_SKEW:
            return {**_INVALID, "sub_code": "isv.invalid-timestamp", "sub_msg": "非法的时间戳参数"}, {}
        return None, biz

    def _cashier(self, params: dict[str, str], biz: dict[str, Any]) -> web.Response:
        out_trade_no, subject = str(biz.get("out_trade_no", "")), str(biz.get("subject", ""))
        try:
            total_fen = yuan_to_fen(str(biz.get("total_amount", "")))
        except ValueError:
            total_fen = 0
        if not (0 < len(out_trade_no) <= 64 and subject and 0 < total_fen <= MAX_AMOUNT_FEN and biz.get("product_code") == "QUICK_WAP_WAY"):
            return _error_page("out_trade_no, subject, total_amount or product_code is missing or invalid")
        trade = self._lookup(out_trade_no=out_trade_no) or self.trades.setdefault(out_trade_no, SandboxTrade(
            out_trade_no=out_trade_no, trade_no=self._now("%Y%m%d") + "22001" + _digits(15),
            total_fen=total_fen, subject=subject, notify_url=params.get("notify_url", ""),
            return_url=params.get("return_url", ""), created_at=self.clock.now(),
            expires_at=beijing_time(biz.get("time_expire")),
        ))
        if trade.total_fen != total_fen:
            return _error_page("交易信息被篡改 (ACQ.TRADE_INFO_CHANGED): the same out_trade_no with another amount")
        if trade.status != "WAIT_BUYER_PAY":
            return _page("支付宝（沙箱）", f"<p>该订单已{'支付' if trade.paid_at else '关闭'}。</p>")
        return _page("支付宝（沙箱）收银台", (
            f"<p>{html.escape(subject)}</p><p class=amount>¥{fen_to_yuan(total_fen)}</p>"
            f'<form method="post" action="cashier/{trade.trade_no}/pay"><button type="submit">确认付款</button></form>'
            + (f'<p><a class=back href="{html.escape(trade.return_url, quote=True)}">取消付款，返回商户</a></p>'
               if trade.return_url.startswith(("http://", "https://")) else "")
        ))

    async def _pay(self, request: web.Request) -> web.Response:
        trade = self._lookup(trade_no=request.match_info["trade_no"])
        if trade is None or trade.status == "TRADE_CLOSED":
            return _error_page("交易不存在或已关闭")
        if trade.status == "WAIT_BUYER_PAY":
            trade.status, trade.paid_at = "TRADE_SUCCESS", self.clock.now()
            trade.buyer_id = "2088" + _digits(12)
            if self.deliver_notices:
                task = asyncio.create_task(self._deliver(trade.out_trade_no))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)
        if not trade.return_url:
            return _page("支付宝（沙箱）", "<p>支付成功。</p>")
        back = {
            "charset": "utf-8", "method": "alipay.trade.wap.pay.return", "app_id": self.app_id, "auth_app_id": self.app_id,
            "out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no, "total_amount": str(fen_to_yuan(trade.total_fen)),
            "seller_id": SELLER_ID, "timestamp": self._now(), "version": "1.0",
        }
        back["sign"] = self._sign(sign_content(back))
        back["sign_type"] = "RSA2"
        joiner = "&" if "?" in trade.return_url else "?"
        raise web.HTTPFound(trade.return_url + joiner + urlencode(back))

    def _query(self, biz: dict[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return {**_BUSINESS, "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
        node = {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "trade_status": trade.status, "total_amount": str(fen_to_yuan(trade.total_fen))}
        if trade.paid_at:
            node |= {"buyer_logon_id": "138****0000", "buyer_user_id": trade.buyer_id,
                     "buyer_pay_amount": node["total_amount"], "send_pay_date": _beijing(trade.paid_at)}
        return node

    def _refund(self, biz: dict[str, Any]) -> dict[str, Any]:
        trade = self._find(biz)
        if trade is None:
            return {**_BUSINESS, "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
        request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        try:
            amount_fen = yuan_to_fen(str(biz.get("refund_amount", "")))
        except ValueError:
            amount_fen = 0
        done = request_no in trade.refunds
        if amount_fen <= 0:
            return {**_BUSINESS, "sub_code": "ACQ.REASON_TRADE_REFUND_FEE_ERR", "sub_msg": "退款金额无效"}
        if done and trade.refunds[request_no] != amount_fen:
            return {**_BUSINESS, "sub_code": "ACQ.DISCORDANT_REPEAT_REQUEST", "sub_msg": "不一致的请求"}
        if not done:
            if trade.status != "TRADE_SUCCESS":
                return {**_BUSINESS, "sub_code": "ACQ.TRADE_STATUS_ERROR", "sub_msg": "交易状态不合法"}
            if sum(trade.refunds.values()) + amount_fen > trade.total_fen:
                return {**_BUSINESS, "sub_code": "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "sub_msg": "退款金额超限"}
            trade.refunds[request_no] = amount_fen
            if sum(trade.refunds.values()) == trade.total_fen:
                trade.status = "TRADE_CLOSED"
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "buyer_logon_id": "138****0000", "fund_change": "N" if done else "Y",
                "refund_fee": str(fen_to_yuan(sum(trade.refunds.values()))), "gmt_refund_pay": self._now()}

    def _find(self, biz: dict[str, Any]) -> SandboxTrade | None:
        if "out_trade_no" in biz:
            return self._lookup(out_trade_no=str(biz["out_trade_no"]))
        return self._lookup(trade_no=str(biz.get("trade_no")))

    def _lookup(self, *, out_trade_no: str | None = None, trade_no: str | None = None) -> SandboxTrade | None:
        """A trade as it stands now: unpaid past its time_expire, it is closed."""
        trade = self.trades.get(out_trade_no) if out_trade_no else next(
            (t for t in self.trades.values() if t.trade_no == trade_no), None)
        if trade and trade.status == "WAIT_BUYER_PAY" and trade.expires_at and self.clock.now() > trade.expires_at:
            trade.status = "TRADE_CLOSED"
        return trade

    def _respond(self, method: str, node: dict[str, Any], *, signed: bool = True) -> web.Response:
        """Alipay's answer shape; like Alipay it escapes `/`, so only the exact text verifies."""
        key = method if method == "error_response" else method.replace(".", "_") + "_response"
        text = json.dumps(node, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")
        sign = f',"sign":"{self._sign(text)}"' if signed else ""
        return web.Response(text=f'{{"{key}":{text}{sign}}}', content_type="application/json", charset="utf-8")

    def _sign(self, content: str, signer: rsa.RSAPrivateKey | None = None) -> str:
        signature = (signer or self._key).sign(content.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")

    def _now(self, fmt: str = TIME_FORMAT) -> str:
        return self.clock.now().astimezone(CHINA_TIME).strftime(fmt)


def sandbox_merchant(*, clock: Clock, notify_url: str, gateway: str, app_id: str = SANDBOX_APP_ID,
                     retry_delays_s: Sequence[float] = NOTICE_RETRY_DELAYS_S) -> tuple[AlipayConfig, AlipaySandbox]:
    """An app key pair made here and a gateway that knows it: the sandbox's Alipay, for `xinyi serve`
    in sandbox mode (mount `sandbox.app()` at MOUNT, with gateway = public URL + MOUNT + /gateway.do)."""
    app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sandbox = AlipaySandbox(app_id=app_id, app_public_key=public_pem(app_key), clock=clock, retry_delays_s=retry_delays_s)
    config = AlipayConfig(app_id=app_id, app_private_key=private_pem(app_key), alipay_public_key=sandbox.public_key_pem,
                          notify_url=notify_url, gateway=gateway)
    return config, sandbox


def sign_content(params: dict[str, str], *excluded: str) -> str:
    """Non-empty parameters but the excluded ones, sorted by name, `k=v` joined by `&`."""
    return "&".join(f"{name}={value}" for name, value in sorted(params.items()) if value and name not in excluded)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def _beijing(at: datetime | None) -> str:
    return at.astimezone(CHINA_TIME).strftime(TIME_FORMAT) if at else ""


# Tap targets of at least 44 x 44 px, as on Alipay's own cashier: an old thumb must hit them.
_STYLE = ("body{font:18px/1.5 system-ui,sans-serif;margin:0 auto;max-width:480px;padding:16px}"
          ".amount{font-size:32px;font-weight:bold}"
          "button{display:block;width:100%;min-height:52px;border:0;border-radius:8px;background:#1677ff;color:#fff;"
          "font-size:20px;font-weight:bold}"
          "a.back{display:inline-flex;align-items:center;min-height:44px;min-width:44px;padding:0 8px;color:#0b3d91}")


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="text/html", charset="utf-8", text=(
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body><h1>{title}</h1>{body}</body></html>"
    ))


def _error_page(message: str) -> web.Response:
    return _page("支付宝（沙箱）：请求无效", f"<p>{html.escape(message)}</p>", status=400)
