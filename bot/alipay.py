"""Alipay open platform: wap pay links, asynchronous notices, trade query and refund.

alipay-sdk-python builds the requests (its request and model classes, sign content and
URL encoding). Left aside are its synchronous HTTP client (calls go through aiohttp), and
its signing and verifying (RSA2, that is SHA256withRSA), whose pure-Python `rsa` takes 25
to 60 ms per signature and 0.15 ms per verification on the event loop; `cryptography`
(OpenSSL) makes the same PKCS#1 v1.5 signature, byte for byte, in under a millisecond,
and checks one in about 40 µs. Amounts travel in yuan with two decimals ("12.34"),
converted from and to fen exactly. Times are Beijing time both ways.

What is signed:
- a request: every non-empty parameter but `sign`, sorted by name, `k=v` joined by `&`;
- a notice: the same, without `sign_type` either, over the URL-decoded values;
- a response: the exact text of its `<method>_response` JSON object, `sign` beside it.
"""
from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

import aiohttp
from aiohttp import web
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.domain.AlipayTradeRefundModel import AlipayTradeRefundModel
from alipay.aop.api.domain.AlipayTradeWapPayModel import AlipayTradeWapPayModel
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.request.AlipayTradeWapPayRequest import AlipayTradeWapPayRequest
from alipay.aop.api.util.SignatureUtils import get_sign_content
from alipay.aop.api.util.WebUtils import url_encode
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from billing.clock import CHINA_TIME, Clock
from billing.core import Core
from billing.money import fen_to_yuan
from billing.pii import mask_id_number
from billing.refunds import GatewayRefund
from billing.trades import TRADE_TTL, open_trade
from bot.config import ConfigError, Settings
from bot.reconcile import GatewayError, GatewayTrade, RefundState, gateway_context
from bot.wechatpay import REFUND_REASONS
from handlers.i18n import t

log = logging.getLogger(__name__)

DEFAULT_GATEWAY = "https://openapi.alipay.com/gateway.do"
NOTIFY_PATH = "/notify/alipay"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CALL_TIMEOUT = aiohttp.ClientTimeout(total=15)
PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")  # TRADE_FINISHED: paid, and past the refund period
OK, BUSINESS_FAILED = "10000", "40004"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
RETRY_REFUND = ("ACQ.SYSTEM_ERROR", "ACQ.SELLER_BALANCE_NOT_ENOUGH", "ACQ.REASON_TRADE_BEEN_FREEZEN")
NOTICE_FIELDS = ("app_id", "out_trade_no", "trade_no", "total_amount", "trade_status", "sign", "sign_type")
_YUAN = re.compile(r"(0|[1-9][0-9]{0,9})(\.[0-9]{1,2})?")


class AlipayError(GatewayError):
    """The gateway refused a call, could not be reached, or answered without a valid signature."""

    def __init__(self, message: str, code: str = "", sub_code: str = "", *, signed: bool = False) -> None:
        super().__init__(f"{message} ({code} {sub_code})" if code else message)
        self.code, self.sub_code, self.signed = code, sub_code, signed


class NoticeRejected(Exception):
    """A notice that must change nothing: `reason` says why, for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Notice:
    """A verified asynchronous notice (`notify_type=trade_status_sync`)."""

    notify_id: str
    out_trade_no: str
    trade_no: str
    trade_status: str
    amount_fen: int
    paid_at: datetime | None
    buyer_id: str

    @property
    def is_payment(self) -> bool:
        return self.trade_status in PAID


@dataclass(frozen=True)
class AlipayConfig:
    """One merchant app: its id and private key, Alipay's public key, our notify URL, the gateway."""

    app_id: str
    app_private_key: str = field(repr=False)  # PEM: PKCS#1 or PKCS#8
    alipay_public_key: str  # PEM (SubjectPublicKeyInfo), or the bare base64 Alipay's console shows
    notify_url: str
    gateway: str = DEFAULT_GATEWAY

    @classmethod
    def from_settings(cls, settings: Settings) -> AlipayConfig | None:
        """None when XINYI_ALIPAY_APPID is unset: Alipay is then not offered."""
        if not settings.alipay_appid:
            return None
        keys = {"XINYI_ALIPAY_PRIVATE_KEY": (settings.alipay_private_key, load_private_key),
                "XINYI_ALIPAY_PUBLIC_KEY": (settings.alipay_public_key, spki_public_pem)}
        missing = [variable for variable, (path, _) in keys.items() if path is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: required with XINYI_ALIPAY_APPID")
        pems = {}
        for variable, (path, check) in keys.items():
            try:
                pems[variable] = path.read_text(encoding="ascii")
                check(pems[variable])
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{variable}: {path} is not a PEM RSA key: {exc}") from None
        return cls(app_id=settings.alipay_appid, app_private_key=pems["XINYI_ALIPAY_PRIVATE_KEY"],
                   alipay_public_key=pems["XINYI_ALIPAY_PUBLIC_KEY"], notify_url=settings.public_url + NOTIFY_PATH,
                   gateway=settings.alipay_gateway)


class Alipay:
    """The client of one merchant app on aiohttp; also a reconciliation gateway (`query`, `refund`).

    The common parameters are set here rather than by the SDK's client, so that `timestamp`
    is Beijing time from our clock (the SDK's client writes the host's local time)."""

    def __init__(self, config: AlipayConfig, http: aiohttp.ClientSession, clock: Clock) -> None:
        self.config, self.http, self.clock = config, http, clock
        self._private_key = load_private_key(config.app_private_key)
        self.alipay_public_key = spki_public_pem(config.alipay_public_key)

    def _signed(self, request: Any) -> dict[str, str]:
        """Every parameter of a request, `sign` included."""
        params = request.get_params() | {
            "app_id": self.config.app_id, "charset": "utf-8", "format": "json", "sign_type": "RSA2",
            "timestamp": self.clock.now().astimezone(CHINA_TIME).strftime(TIME_FORMAT),
        }
        signature = self._private_key.sign(get_sign_content(params).encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        params["sign"] = base64.b64encode(signature).decode("ascii")
        return params

    def wap_pay_url(self, *, out_trade_no: str, amount_fen: int, subject: str, expires_at: datetime,
                    return_url: str) -> str:
        """The signed alipay.trade.wap.pay GET URL the cashier redirects to (302)."""
        model = AlipayTradeWapPayModel()
        model.out_trade_no = out_trade_no
        model.total_amount = str(fen_to_yuan(amount_fen))
        model.subject = subject[:256]
        model.product_code = "QUICK_WAP_WAY"
        model.time_expire = expires_at.astimezone(CHINA_TIME).strftime(TIME_FORMAT)
        model.quit_url = return_url
        request = AlipayTradeWapPayRequest(biz_model=model)
        request.notify_url = self.config.notify_url
        request.return_url = return_url
        return f"{self.config.gateway}?{url_encode(self._signed(request), 'utf-8')}"

    def verify_notice(self, params: Mapping[str, str]) -> Notice:
        return verify_notice(params, app_id=self.config.app_id, alipay_public_key=self.alipay_public_key)

    async def query(self, out_trade_no: str) -> GatewayTrade:
        model = AlipayTradeQueryModel()
        model.out_trade_no = out_trade_no
        try:
            node = await self._call(AlipayTradeQueryRequest(biz_model=model), "alipay.trade.query")
        except AlipayError as exc:
            if exc.sub_code == TRADE_NOT_EXIST:  # the buyer never got as far as paying
                return GatewayTrade("unpaid")
            raise
        if node.get("out_trade_no") != out_trade_no:
            raise AlipayError(f"the query of {out_trade_no} was answered for {str(node.get('out_trade_no'))[:64]!r}")
        status = node.get("trade_status")
        if status not in PAID:
            return GatewayTrade("closed" if status == "TRADE_CLOSED" else "unpaid")
        trade_no = node.get("trade_no")
        try:
            amount_fen = yuan_to_fen(str(node.get("total_amount")))
        except ValueError:
            amount_fen = 0
        if not (isinstance(trade_no, str) and trade_no and amount_fen):
            raise AlipayError(f"the query of {out_trade_no} says paid without a trade_no and a total_amount")
        return GatewayTrade("paid", trade_no, amount_fen, beijing_time(node.get("send_pay_date")))

    async def refund(self, refund: GatewayRefund) -> RefundState:
        """The same out_refund_no (Alipay's out_request_no) again refunds nothing more."""
        model = AlipayTradeRefundModel()
        model.out_trade_no = refund.out_trade_no
        model.out_request_no = refund.out_refund_no
        model.refund_amount = str(fen_to_yuan(refund.refund_fen))
        model.refund_reason = t(REFUND_REASONS.get(refund.reason, REFUND_REASONS["overpaid"]))
        try:
            node = await self._call(AlipayTradeRefundRequest(biz_model=model), "alipay.trade.refund")
        except AlipayError as exc:
            if exc.signed and exc.code == BUSINESS_FAILED and exc.sub_code not in RETRY_REFUND:
                log.error("alipay: refund %s refused: %s", refund.out_refund_no, exc)
                return "failed"
            raise
        if node.get("out_trade_no") != refund.out_trade_no:
            raise AlipayError(f"the refund {refund.out_refund_no} was answered for {str(node.get('out_trade_no'))[:64]!r}")
        return "done"

    async def _call(self, request: Any, method: str) -> dict[str, Any]:
        """POST a signed request and return the verified response node (code 10000 only)."""
        body = url_encode(self._signed(request), "utf-8")
        try:
            async with self.http.post(
                self.config.gateway, data=body.encode("ascii"), timeout=CALL_TIMEOUT,
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            ) as response:
                text, status = await response.text(encoding="utf-8", errors="replace"), response.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise AlipayError(f"{method}: {type(exc).__name__} {exc}") from exc
        if status != 200:
            raise AlipayError(f"{method}: HTTP {status}")
        return verified_response(text, method, self.alipay_public_key)


async def wap_checkout(core: Core, client: Alipay, token: str, return_url: str) -> str:
    """A new trade for what the bill behind a cashier link still owes, and the Alipay URL to pay it."""
    trade, bill = await open_trade(core, token, "alipay")
    url = client.wap_pay_url(out_trade_no=trade.out_trade_no, amount_fen=trade.amount_fen,
                             subject=t("信医账单 {bill_no}", bill_no=bill.bill_no),
                             expires_at=trade.created_at + TRADE_TTL, return_url=return_url)
    log.info("alipay: trade %s opened for bill %s, %s fen", trade.out_trade_no, bill.bill_no, trade.amount_fen)
    return url


ALIPAY_CONFIG = web.AppKey("alipay_config", AlipayConfig)  # given by whoever wires the app; none, no Alipay
ALIPAY = web.AppKey("alipay", Alipay)


client_context = gateway_context(ALIPAY_CONFIG, ALIPAY, Alipay)


def verified_response(text: str, method: str, alipay_public_key: str) -> dict[str, Any]:
    """The `<method>_response` node of a gateway answer, its signature checked over its exact text.
    An unsigned answer is believed only as a refusal; a refusal raises AlipayError."""
    key = method.replace(".", "_") + "_response"
    try:
        document = json.loads(text)
        start = re.search(rf'"{key}"\s*:\s*', text)
        node, end = json.JSONDecoder().raw_decode(text, start.end()) if start else (None, 0)
    except ValueError:
        raise AlipayError(f"{method}: the answer is not JSON") from None
    if not isinstance(document, dict) or not isinstance(node, dict):
        raise AlipayError(f"{method}: the answer has no {key}")
    code, sub_code = str(node.get("code", "")), str(node.get("sub_code", ""))
    sign = document.get("sign")
    if sign is None and code != OK:
        raise AlipayError(f"{method} refused (unsigned answer)", code, sub_code)
    if not isinstance(sign, str) or not _verifies(alipay_public_key, text[start.end():end].encode(), sign):
        raise AlipayError(f"{method}: the answer's signature does not verify")
    if code != OK:
        raise AlipayError(f"{method} refused: {node.get('sub_msg') or node.get('msg')}", code, sub_code, signed=True)
    return node


def verify_notice(params: Mapping[str, str], *, app_id: str, alipay_public_key: str) -> Notice:
    """Check a notice as Alipay sent it (form fields, URL-decoded); raise NoticeRejected if it
    is not genuine, not for this app, or not well formed."""
    missing = [name for name in NOTICE_FIELDS if not params.get(name)]
    if missing:
        raise NoticeRejected(f"missing {', '.join(missing)}")
    if params["sign_type"] != "RSA2":
        raise NoticeRejected(f"sign_type {params['sign_type'][:10]!r} is not RSA2")
    signed = {k: v for k, v in params.items() if k not in ("sign", "sign_type") and v}
    if not _verifies(alipay_public_key, get_sign_content(signed).encode("utf-8"), params["sign"]):
        raise NoticeRejected("bad signature")
    if params["app_id"] != app_id:
        raise NoticeRejected(f"app_id {params['app_id'][:32]!r} is not ours")
    try:
        amount_fen = yuan_to_fen(params["total_amount"])
    except ValueError:
        raise NoticeRejected(f"total_amount {params['total_amount'][:20]!r} is not an amount") from None
    return Notice(
        notify_id=params.get("notify_id", ""),
        out_trade_no=params["out_trade_no"],
        trade_no=params["trade_no"],
        trade_status=params["trade_status"],
        amount_fen=amount_fen,
        paid_at=beijing_time(params.get("gmt_payment")),
        buyer_id=params.get("buyer_id", ""),
    )


def _verifies(public_key: str, message: bytes, sign: str) -> bool:
    """The SDK's verify_with_rsa (base64 sign, PKCS#1 v1.5 over SHA-256), through OpenSSL."""
    try:
        _public_key(public_key).verify(base64.b64decode(sign), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):  # ValueError covers a sign that is not base64
        return False
    return True


def yuan_to_fen(text: str) -> int:
    """"12.34" -> 1234, exactly; anything but a plain amount with at most two decimals is refused."""
    if not _YUAN.fullmatch(text):
        raise ValueError(f"not an amount in yuan: {text!r}")
    return int(Decimal(text) * 100)


def beijing_time(text: object) -> datetime | None:
    """"2026-03-02 17:00:00" (Beijing time) as an aware UTC datetime; None when absent or malformed."""
    try:
        return datetime.strptime(str(text), TIME_FORMAT).replace(tzinfo=CHINA_TIME).astimezone(timezone.utc)
    except ValueError:
        return None


def mask_buyer(buyer_id: str) -> str:
    """Alipay's user id (2088...) is personal: logs keep its first six and last four digits."""
    return mask_id_number(buyer_id) if buyer_id else "-"


def load_private_key(pem: str) -> RSAPrivateKey:
    """The app's key as Alipay's key tool writes it: PKCS#1 or PKCS#8 PEM."""
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise ValueError("the Alipay app private key must be an RSA key")
    return key


def load_public_key(pem: str) -> RSAPublicKey:
    """Alipay's key from a PEM or the bare base64 Alipay's console shows."""
    text = pem.strip()
    if not text.startswith("-----BEGIN"):
        text = f"-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----"
    key = serialization.load_pem_public_key(text.encode("ascii"))
    if not isinstance(key, RSAPublicKey):
        raise ValueError("Alipay's public key must be an RSA key")
    return key


_public_key = functools.lru_cache(maxsize=8)(load_public_key)  # a notice is checked against a key parsed once


def spki_public_pem(pem: str) -> str:
    """Alipay's key as one spelling (SubjectPublicKeyInfo PEM), whichever way it was given."""
    return load_public_key(pem).public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")
