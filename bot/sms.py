"""SMS through the providers' official SDKs (XINYI_SMS_PROVIDER=tencent or aliyun).

An SMS in mainland China is a template approved beforehand in the provider's console plus
its parameters: xinyi sends the template id of the message's kind (in the member's
language where XINYI_SMS_TEMPLATES names one, `bill_issued.en=ID`, else the kind's own)
and the parameters, never free text. The SDKs are synchronous: each call runs in a thread.

A provider's answer becomes the outbox's: sent; `NotNow` (a network failure, a provider
error: retried with the outbox's backoff; a rate limit on the number: later, the try not
counted); `Refused` (a template, signature, number or key the provider will never take:
parked as dead, shown in the console). Error texts are masked before they are kept.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import urlsplit

from alibabacloud_dysmsapi20170525 import models as aliyun
from alibabacloud_dysmsapi20170525.client import Client as AliyunClient
from alibabacloud_tea_openapi.utils_models import Config as AliyunConfig
from Tea.exceptions import TeaException
from tencentcloud.common.credential import Credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models as tencent
from tencentcloud.sms.v20210111.sms_client import SmsClient

from billing.outbox import NotNow, Refused
from billing.pii import mask_numbers, mask_phone

log = logging.getLogger(__name__)

PROVIDERS = ("tencent", "aliyun")
# The template of each kind of SMS and its parameters, in order (Tencent's {1}, {2}...; Aliyun's ${name}).
TEMPLATES = {
    "bill_issued": ("bill_no", "amount", "due"),
    "bill_free": ("bill_no",),  # a bill with nothing to pay
    "bill_reminder": ("bill_no", "amount", "due"),
    "bill_overdue": ("bill_no", "amount", "due"),
    "refund_due": ("bill_no", "amount"),
    "payment_received": ("amount", "unpaid"),
    "line_rerated": ("limit", "available"),  # a new tier from the registry's credit score
    **{f"status_{to}": () for to in ("enrolled", "active", "suspended", "suspended_until_repair", "suspended_over_limit",
                                     "revoked", "blacklisted", "cancelled")},
}
# At most so many SMS to one phone within so many seconds: the providers' own defaults (XINYI_SMS_PER_PHONE).
PER_PHONE = ((1, 30), (5, 3600), (10, 86400))
TIMEOUT_S = 10
TENCENT_REGION = "ap-guangzhou"
TENCENT_ENDPOINT = "https://sms.tencentcloudapi.com"
ALIYUN_ENDPOINT = "https://dysmsapi.aliyuncs.com"
LATER = timedelta(hours=1)  # a provider's daily or hourly limit on a number: the outbox caps its waits at an hour
TENCENT_WAITS = {"LimitExceeded.PhoneNumberThirtySecondLimit": timedelta(seconds=30)}
TENCENT_GIVE_UP = {"FailedOperation.TemplateIncorrectOrUnapproved", "FailedOperation.SignatureIncorrectOrUnapproved",
                   "FailedOperation.PhoneNumberInBlacklist", "FailedOperation.ContainSensitiveWord",
                   "InvalidParameterValue.IncorrectPhoneNumber", "InvalidParameterValue.TemplateParameterFormatError",
                   "InvalidParameterValue.TemplateParameterLengthLimit", "InvalidParameterValue.ContentLengthLimit"}
TENCENT_GIVE_UP_FAMILIES = ("UnauthorizedOperation.", "AuthFailure.")
ALIYUN_LIMITS = {"isv.BUSINESS_LIMIT_CONTROL": timedelta(minutes=5), "isv.DAY_LIMIT_CONTROL": LATER,
                 "isv.MONTH_LIMIT_CONTROL": LATER}
ALIYUN_GIVE_UP = {"isv.MOBILE_NUMBER_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL",
                  "isv.TEMPLATE_MISSING_PARAMETERS", "isv.INVALID_PARAMETERS", "isv.PARAM_LENGTH_LIMIT",
                  "isv.BLACK_KEY_CONTROL_LIMIT", "isv.SMS_CONTENT_ILLEGAL", "isp.RAM_PERMISSION_DENY",
                  "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "SignatureDoesNotMatch",
                  "IncompleteSignature"}


@dataclass(frozen=True)
class Sms:
    template: str  # a key of TEMPLATES
    params: tuple[str, ...]  # in the order TEMPLATES names them
    locale: str
    text: str  # what the template says, filled in: for the sandbox and the log

    def named(self) -> dict[str, str]:
        return dict(zip(TEMPLATES[self.template], self.params, strict=True))


class SmsGateway(Protocol):
    async def send(self, phone: str, sms: Sms) -> None:
        """Deliver one text message or raise (NotNow, Refused, anything else: retried)."""


class LogSms:
    """No provider set: the log gets the masked number and the text (notices carry no ID or phone numbers)."""

    async def send(self, phone: str, sms: Sms) -> None:
        log.info("sms to %s: %s", mask_phone(phone), sms.text)


@dataclass(frozen=True)
class Account:
    """A provider account: XINYI_SMS_SECRET_ID/_SECRET_KEY (Aliyun's AccessKey ID and secret),
    _SIGN_NAME, _TEMPLATES, _SDK_APP_ID (Tencent only), _ENDPOINT (the API's base URL)."""

    secret_id: str
    secret_key: str
    sign_name: str
    templates: Mapping[str, str]
    sdk_app_id: str | None = None
    endpoint: str | None = None

    def template_id(self, sms: Sms) -> str:
        found = self.templates.get(f"{sms.template}.{sms.locale}") or self.templates.get(sms.template)
        if not found:
            raise Refused(f"XINYI_SMS_TEMPLATES names no template for {sms.template}")
        return found


def tencent_refusal(code: str, message: str) -> Exception:
    text = mask_numbers(f"{code}: {message}")
    if code.startswith("LimitExceeded."):
        return NotNow(text, TENCENT_WAITS.get(code, LATER), counted=False)
    if code in TENCENT_GIVE_UP or code.startswith(TENCENT_GIVE_UP_FAMILIES):
        return Refused(text)
    return NotNow(text)


def aliyun_refusal(code: str, message: str) -> Exception:
    text = mask_numbers(f"{code}: {message}")
    if code in ALIYUN_LIMITS:
        return NotNow(text, ALIYUN_LIMITS[code], counted=False)
    if code in ALIYUN_GIVE_UP:
        return Refused(text)
    return NotNow(text)


class TencentSms:
    """Tencent Cloud SMS, API 2021-01-11 SendSms, signed TC3-HMAC-SHA256 by the SDK."""

    def __init__(self, account: Account) -> None:
        base = urlsplit(account.endpoint or TENCENT_ENDPOINT)
        http = HttpProfile(protocol=base.scheme, endpoint=base.netloc, reqTimeout=TIMEOUT_S)
        self.account = account
        self.client = SmsClient(Credential(account.secret_id, account.secret_key), TENCENT_REGION, ClientProfile(httpProfile=http))

    async def send(self, phone: str, sms: Sms) -> None:
        request = tencent.SendSmsRequest()
        request.PhoneNumberSet = [f"+86{phone}"]
        request.SmsSdkAppId = self.account.sdk_app_id
        request.SignName = self.account.sign_name
        request.TemplateId = self.account.template_id(sms)
        request.TemplateParamSet = list(sms.params)
        try:
            answer = await asyncio.to_thread(self.client.SendSms, request)
        except TencentCloudSDKException as exc:
            raise tencent_refusal(exc.get_code() or "", exc.get_message() or "") from None
        except Exception as exc:  # the network: retried with the outbox's backoff
            raise NotNow(mask_numbers(f"{type(exc).__name__}: {exc}")) from None
        if len(answer.SendStatusSet or ()) != 1:
            raise NotNow("Tencent Cloud answered without the number's status")
        [status] = answer.SendStatusSet
        if status.Code != "Ok":
            raise tencent_refusal(status.Code, status.Message or "")


class AliyunSms:
    """Alibaba Cloud SMS (dysmsapi 2017-05-25) SendSms, signed ACS3-HMAC-SHA256 by the SDK."""

    def __init__(self, account: Account) -> None:
        base = urlsplit(account.endpoint or ALIYUN_ENDPOINT)
        self.account = account
        self.client = AliyunClient(AliyunConfig(access_key_id=account.secret_id, access_key_secret=account.secret_key,
                                    endpoint=base.netloc, protocol=base.scheme,
                                    connect_timeout=TIMEOUT_S * 1000, read_timeout=TIMEOUT_S * 1000))

    async def send(self, phone: str, sms: Sms) -> None:
        request = aliyun.SendSmsRequest(phone_numbers=phone, sign_name=self.account.sign_name,
                                 template_code=self.account.template_id(sms),
                                 template_param=json.dumps(sms.named(), ensure_ascii=False))
        try:
            answer = await asyncio.to_thread(self.client.send_sms, request)
        except TeaException as exc:
            raise aliyun_refusal(str(exc.code or ""), str(exc.message or "")) from None
        except Exception as exc:  # the network: retried with the outbox's backoff
            raise NotNow(mask_numbers(f"{type(exc).__name__}: {exc}")) from None
        if answer.body.code != "OK":
            raise aliyun_refusal(answer.body.code or "", answer.body.message or "")


def provider(name: str, account: Account) -> SmsGateway:
    return {"tencent": TencentSms, "aliyun": AliyunSms}[name](account)


def rate_wait(sent_at: list[datetime], limits: tuple[tuple[int, int], ...], now: datetime) -> timedelta | None:
    """How long until another SMS keeps within `limits` ((count, seconds) pairs) given when the earlier
    ones went; None: it may go now."""
    waits = []
    for count, seconds in limits:
        within = sorted(at for at in sent_at if at > now - timedelta(seconds=seconds))
        if len(within) >= count:
            waits.append(within[-count] + timedelta(seconds=seconds) - now)
    return max(waits, default=None)
