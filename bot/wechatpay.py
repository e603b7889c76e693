"""WeChat Pay API v3 for a direct merchant (直连商户): JSAPI payments inside the official account.

What is signed (RSA PKCS#1 v1.5 with SHA-256, base64), each part on its own line, the last
line ended too:
- a request, with the merchant key: `METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`, sent as
  `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",timestamp="..",serial_no=".."`;
- an answer or a notice, with the platform key: `TIMESTAMP\\nNONCE\\nBODY\\n`, sent in
  Wechatpay-Timestamp, Wechatpay-Nonce, Wechatpay-Signature and Wechatpay-Serial (the id of
  the platform public key, `PUB_KEY_ID_...`). A 2xx answer without a valid signature is forged;
- the WeixinJSBridge parameters, with the merchant key: `appId\\ntimeStamp\\nnonceStr\\npackage\\n`.
A notice's resource is AEAD_AES_256_GCM under the APIv3 key (nonce and associated data beside it).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp import web
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from yarl import URL

from billing.clock import Clock
from billing.core import Core
from billing.refunds import GatewayRefund
from billing.trades import TRADE_TTL, open_trade
from billing.validate import printable_ascii, whole_number
from bot.config import ConfigError, Settings
from bot.reconcile import GatewayError, GatewayTrade, RefundState, gateway_context
from handlers.i18n import t

log = logging.getLogger(__name__)

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
DEFAULT_API_BASE = "https://api.mch.weixin.qq.com"
NOTIFY_PATH = "/notify/wechatpay"
MAX_SKEW = timedelta(minutes=5)
BEIJING = timezone(timedelta(hours=8))
CALL_TIMEOUT = aiohttp.ClientTimeout(total=15)
PAID_STATES = ("SUCCESS", "REFUND")  # REFUND: paid, then (partly) refunded
CLOSED_STATES = ("CLOSED", "REVOKED", "PAYERROR")
REFUND_STATES: dict[str, RefundState] = {"SUCCESS": "done", "PROCESSING": "pending", "CLOSED": "failed", "ABNORMAL": "failed"}
REFUND_REASONS = {  # WeChat shows the reason to the payer with the refund, in the source language
    "already_paid": t("账单已付清，重复支付的款项原路退回"),
    "overpaid": t("超出账单应付的款项原路退回"),
    "item_abandoned": t("未执行项目退费"),
}


def rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa_verify(key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        key.verify(base64.b64decode(signature, validate=True), message.encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):  # a bad base64 is a binascii.Error, a ValueError
        return False
    return True


def signing_lines(*parts: str) -> str:
    return "".join(f"{part}\n" for part in parts)


def rfc3339(at: datetime) -> str:
    return at.astimezone(BEIJING).isoformat(timespec="seconds")


def mask_openid(openid: str) -> str:
    """`oUpF****WeS6`: enough to match a log line with a complaint, not to name the payer."""
    return openid[:4] + "****" + openid[-4:] if len(openid) > 8 else "*" * len(openid)


@dataclass(frozen=True)
class WechatPayConfig:
    mchid: str
    appid: str  # the official account's
    serial_no: str  # of the merchant API certificate whose key signs our requests
    private_key: rsa.RSAPrivateKey = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    platform_public_key: rsa.RSAPublicKey = field(repr=False)
    platform_public_key_id: str
    notify_url: str
    api_base: str = DEFAULT_API_BASE

    def __post_init__(self) -> None:
        if len(self.apiv3_key) != 32:
            raise ValueError("the APIv3 key must be 32 bytes")

    @classmethod
    def from_settings(cls, settings: Settings) -> WechatPayConfig | None:
        """None when no WeChat Pay variable is set; a ConfigError naming what is missing when some are."""
        names = ("wechatpay_mchid", "wechatpay_serial_no", "wechatpay_private_key", "wechatpay_apiv3_key",
                 "wechatpay_public_key", "wechatpay_public_key_id")
        if not any(getattr(settings, name) for name in names):
            return None
        missing = [f"XINYI_{name.upper()}" for name in (*names, "wechat_appid") if not getattr(settings, name)]
        if missing:
            raise ConfigError(f"{', '.join(missing)}: required for WeChat Pay")
        apiv3_key = settings.wechatpay_apiv3_key.encode()
        if len(apiv3_key) != 32:
            raise ConfigError("XINYI_WECHATPAY_APIV3_KEY: must be the 32 characters set on the merchant platform")
        return cls(
            mchid=settings.wechatpay_mchid, appid=settings.wechat_appid, serial_no=settings.wechatpay_serial_no,
            private_key=_pem_key(settings.wechatpay_private_key, "XINYI_WECHATPAY_PRIVATE_KEY", private=True),
            apiv3_key=apiv3_key,
            platform_public_key=_pem_key(settings.wechatpay_public_key, "XINYI_WECHATPAY_PUBLIC_KEY", private=False),
            platform_public_key_id=settings.wechatpay_public_key_id,
            notify_url=settings.public_url + NOTIFY_PATH, api_base=settings.wechatpay_api_base,
        )


def _pem_key(path: Path, variable: str, *, private: bool):
    kind = "private" if private else "public"
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, None) if private else serialization.load_pem_public_key(data)
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{variable}: {path} is not a PEM {kind} key: {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey if private else rsa.RSAPublicKey):
        raise ConfigError(f"{variable}: {path} is not an RSA key")
    return key


# --- what WeChat Pay sends: answers and notices ------------------------------------------


class Rejected(Exception):
    """A message claiming to come from WeChat Pay that must change nothing; `reason` is for the log."""

    def __init__(self, reason: str, http_status: int = 400) -> None:
        super().__init__(reason)
        self.reason, self.http_status = reason, http_status


@dataclass(frozen=True)
class PaidTransaction:
    out_trade_no: str
    transaction_id: str
    amount_fen: int
    paid_at: datetime
    payer_openid: str


def verify_platform_signature(config: WechatPayConfig, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
    serial = headers.get("Wechatpay-Serial", "")
    timestamp = headers.get("Wechatpay-Timestamp", "")
    nonce = headers.get("Wechatpay-Nonce", "")
    signature = headers.get("Wechatpay-Signature", "")
    seconds = whole_number(timestamp, 12)
    if seconds is None or not all(printable_ascii(value, 1024) for value in (serial, nonce, signature)):
        raise Rejected("the Wechatpay-Serial, -Timestamp, -Nonce and -Signature headers are required, in ASCII", 401)
    if serial != config.platform_public_key_id:
        raise Rejected(f"signed with an unknown key {serial[:64]!r}", 401)
    if abs(now.timestamp() - seconds) > MAX_SKEW.total_seconds():
        raise Rejected(f"Wechatpay-Timestamp is more than {MAX_SKEW.seconds} s away", 401)
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise Rejected("the body is not UTF-8") from None
    if not rsa_verify(config.platform_public_key, signing_lines(timestamp, nonce, text), signature):
        raise Rejected("bad signature", 401)


def open_notice(config: WechatPayConfig, headers: Mapping[str, str], body: bytes, now: datetime) -> dict[str, Any] | None:
    """Verify a notice and decrypt its resource: the transaction of a TRANSACTION.SUCCESS, or
    None for an event of another type. Pure: reads nothing but its arguments."""
    verify_platform_signature(config, headers, body, now)
    try:
        notice = json.loads(body)
        if notice["event_type"] != "TRANSACTION.SUCCESS":
            return None
        resource = notice["resource"]
        if resource["algorithm"] != "AEAD_AES_256_GCM":
            raise Rejected(f"unknown algorithm {str(resource['algorithm'])[:32]!r}")
        plaintext = AESGCM(config.apiv3_key).decrypt(
            resource["nonce"].encode(), base64.b64decode(resource["ciphertext"], validate=True),
            (resource.get("associated_data") or "").encode(),
        )
        transaction = json.loads(plaintext)
    except InvalidTag:
        raise Rejected("the resource does not decrypt with our APIv3 key") from None
    except (KeyError, TypeError, AttributeError, ValueError):
        raise Rejected("malformed notice") from None
    if not isinstance(transaction, dict):
        raise Rejected("malformed transaction")
    return transaction


def paid_transaction(config: WechatPayConfig, transaction: Mapping[str, Any]) -> PaidTransaction:
    """A paid transaction of ours, read from a notice or a query answer."""
    try:
        if transaction["mchid"] != config.mchid:
            raise Rejected("the transaction is another merchant's (mchid)")
        if transaction["appid"] != config.appid:
            raise Rejected("the transaction is another account's (appid)")
        if transaction["trade_state"] not in PAID_STATES:
            raise Rejected(f"trade_state {str(transaction['trade_state'])[:32]!r} is not paid")
        amount = transaction["amount"]
        total = amount["total"]
        if amount.get("currency", "CNY") != "CNY" or isinstance(total, bool) or not isinstance(total, int) or total <= 0:
            raise Rejected("the amount is not a positive number of fen in CNY")
        paid_at = datetime.fromisoformat(transaction["success_time"])
        if paid_at.tzinfo is None:
            raise Rejected("success_time has no time zone")
        return PaidTransaction(str(transaction["out_trade_no"]), str(transaction["transaction_id"]), total, paid_at,
                               str((transaction.get("payer") or {}).get("openid", "")))
    except (KeyError, TypeError, AttributeError, ValueError):
        raise Rejected("malformed transaction") from None


# --- what we call: prepay, query, refund ---------------------------------------------------


class WechatPayError(GatewayError):
    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.status, self.code = status, code


class WechatPay:
    """The merchant API client on aiohttp; also a reconciliation gateway (`query`, `refund`)."""

    def __init__(self, config: WechatPayConfig, http: aiohttp.ClientSession, clock: Clock) -> None:
        self.config, self.http, self.clock = config, http, clock
        self._base_path = urlsplit(config.api_base).path.rstrip("/")

    def authorization(self, method: str, signed_path: str, body: str) -> str:
        config = self.config
        timestamp, nonce = str(int(self.clock.now().timestamp())), secrets.token_hex(16)
        signature = rsa_sign(config.private_key, signing_lines(method, signed_path, timestamp, nonce, body))
        return (f'{SCHEMA} mchid="{config.mchid}",nonce_str="{nonce}",signature="{signature}",'
                f'timestamp="{timestamp}",serial_no="{config.serial_no}"')

    async def call(self, method: str, path_qs: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        body = "" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        headers = {"Authorization": self.authorization(method, self._base_path + path_qs, body), "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        url = URL(self.config.api_base.rstrip("/") + path_qs, encoded=True)  # sent exactly as signed
        try:
            async with self.http.request(method, url, data=body.encode() if payload is not None else None,
                                         headers=headers, timeout=CALL_TIMEOUT) as response:
                raw, status, answer_headers = await response.read(), response.status, response.headers
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise WechatPayError(f"{method} {path_qs}: {type(exc).__name__} {exc}") from exc
        if status >= 300:
            code, message = _error_of(raw)
            raise WechatPayError(f"{method} {path_qs} answered {status} {code}: {message}", status=status, code=code)
        try:
            verify_platform_signature(self.config, answer_headers, raw, self.clock.now())
            return json.loads(raw) if raw else {}
        except Rejected as exc:
            raise WechatPayError(f"{method} {path_qs}: the answer is not WeChat Pay's: {exc.reason}", status=status) from None
        except ValueError:
            raise WechatPayError(f"{method} {path_qs}: the answer is not JSON", status=status) from None

    async def prepay_jsapi(self, *, out_trade_no: str, description: str, amount_fen: int, openid: str,
                           expires_at: datetime) -> str:
        config = self.config
        answer = await self.call("POST", "/v3/pay/transactions/jsapi", {
            "appid": config.appid, "mchid": config.mchid, "description": description[:127],
            "out_trade_no": out_trade_no, "time_expire": rfc3339(expires_at), "notify_url": config.notify_url,
            "amount": {"total": amount_fen, "currency": "CNY"}, "payer": {"openid": openid},
        })
        prepay_id = answer.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise WechatPayError(f"the prepay of {out_trade_no} was answered without a prepay_id")
        return prepay_id

    def jsapi_params(self, prepay_id: str) -> dict[str, str]:
        """What the cashier page hands to WeixinJSBridge.invoke('getBrandWCPayRequest', ...)."""
        appid, timestamp, nonce = self.config.appid, str(int(self.clock.now().timestamp())), secrets.token_hex(16)
        package = f"prepay_id={prepay_id}"
        return {"appId": appid, "timeStamp": timestamp, "nonceStr": nonce, "package": package, "signType": "RSA",
                "paySign": rsa_sign(self.config.private_key, signing_lines(appid, timestamp, nonce, package))}

    async def query(self, out_trade_no: str) -> GatewayTrade:
        try:
            transaction = await self.call(
                "GET", f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}?mchid={quote(self.config.mchid)}")
        except WechatPayError as exc:
            if exc.code == "ORDER_NOT_EXIST":  # the prepay never reached WeChat Pay: nothing to pay
                return GatewayTrade("unpaid")
            raise
        state = transaction.get("trade_state")
        if state not in PAID_STATES:
            return GatewayTrade("closed" if state in CLOSED_STATES else "unpaid")
        try:
            paid = paid_transaction(self.config, transaction)
        except Rejected as exc:
            raise WechatPayError(f"the query of {out_trade_no} was answered with {exc.reason}") from None
        if paid.out_trade_no != out_trade_no:
            raise WechatPayError(f"the query of {out_trade_no} was answered for {paid.out_trade_no}")
        return GatewayTrade("paid", paid.transaction_id, paid.amount_fen, paid.paid_at)

    async def refund(self, refund: GatewayRefund) -> RefundState:
        """The same out_refund_no again asks after the same refund: WeChat Pay refunds it once."""
        answer = await self.call("POST", "/v3/refund/domestic/refunds", {
            "out_trade_no": refund.out_trade_no, "out_refund_no": refund.out_refund_no,
            "reason": REFUND_REASONS.get(refund.reason, REFUND_REASONS["overpaid"]),
            "amount": {"refund": refund.refund_fen, "total": refund.total_fen, "currency": "CNY"},
        })
        status = answer.get("status")
        if status not in REFUND_STATES:
            raise WechatPayError(f"the refund {refund.out_refund_no} was answered with status {status!r}")
        return REFUND_STATES[status]


def _error_of(raw: bytes) -> tuple[str, str]:
    """`{"code": "...", "message": "..."}` of a refusal, as far as it can be read."""
    try:
        error = json.loads(raw)
        return str(error.get("code", "")), str(error.get("message", ""))[:200]
    except (ValueError, AttributeError):
        return "", raw[:200].decode(errors="replace")


async def jsapi_checkout(core: Core, client: WechatPay, token: str, openid: str) -> dict[str, str]:
    """A new trade for what the bill behind a cashier link still owes, and the JSAPI parameters to pay it."""
    trade, bill = await open_trade(core, token, "wechatpay", payer_openid=openid)
    prepay_id = await client.prepay_jsapi(
        out_trade_no=trade.out_trade_no, description=t("信医账单 {bill_no}", bill_no=bill.bill_no),
        amount_fen=trade.amount_fen, openid=openid, expires_at=trade.created_at + TRADE_TTL,
    )
    log.info("wechatpay: trade %s opened for bill %s, %s fen, payer %s", trade.out_trade_no, bill.bill_no,
             trade.amount_fen, mask_openid(openid))
    return client.jsapi_params(prepay_id)


# --- application wiring --------------------------------------------------------------------

WECHATPAY_CONFIG = web.AppKey("wechatpay_config", WechatPayConfig)
WECHATPAY = web.AppKey("wechatpay", WechatPay)


client_context = gateway_context(WECHATPAY_CONFIG, WECHATPAY, WechatPay)
