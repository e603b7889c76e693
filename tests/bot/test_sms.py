"""SMS through the providers' official SDKs, against local stand-ins of their HTTP APIs that
verify the SDKs' real signatures (tests/bot/sms_standins.py): sent, a wrong key refused, and
each refusal mapped to the outbox's retry or give-up."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sms_standins import AliyunStandIn, TencentStandIn

from billing.outbox import NotNow, Refused
from bot.sms import Account, AliyunSms, Sms, TencentSms

PHONE = "13912345678"
KEYS = {"AKIDsample": "sample-secret-key"}
TEMPLATES = {"bill_reminder": "1001", "bill_reminder.en": "1002", "status_suspended": "1003"}
REMINDER = Sms("bill_reminder", ("B20261205001", "¥30.50", "12月7日 10:00"), "zh_Hans", "您有一笔就诊账单待付款。")
PROVIDERS = {"tencent": (TencentStandIn, TencentSms), "aliyun": (AliyunStandIn, AliyunSms)}


@pytest.fixture(params=sorted(PROVIDERS))
async def provider(request, aiohttp_server):
    """A stand-in on loopback and a gateway of that provider pointed at it: (stand_in, gateway, with_key)."""
    stand_in_type, gateway_type = PROVIDERS[request.param]
    stand_in = stand_in_type(dict(KEYS))
    server = await aiohttp_server(stand_in.app())

    def with_key(secret_id: str = "AKIDsample", secret_key: str = "sample-secret-key"):
        return gateway_type(Account(secret_id, secret_key, "信医", TEMPLATES, sdk_app_id="1400000001",
                                    endpoint=str(server.make_url("")).rstrip("/")))

    return stand_in, with_key(), with_key


async def test_sent_signed_with_the_template_and_its_parameters(provider):
    stand_in, gateway, _ = provider
    await gateway.send(PHONE, REMINDER)
    await gateway.send(PHONE, Sms("bill_reminder", REMINDER.params, "en", "You have a bill to pay."))
    await gateway.send(PHONE, Sms("status_suspended", (), "zh_Hant", "您的信用就醫服務已暫停"))
    assert stand_in.refused == 0 and [sms["template"] for sms in stand_in.sent] == ["1001", "1002", "1003"]
    first = stand_in.sent[0]
    assert first["sign"] == "信医"
    if isinstance(stand_in, TencentStandIn):
        assert (first["phone"], first["app"], first["params"]) == ("+86" + PHONE, "1400000001", list(REMINDER.params))
    else:
        assert first["phone"] == PHONE
        assert first["params"] == {"bill_no": "B20261205001", "amount": "¥30.50", "due": "12月7日 10:00"}


@pytest.mark.parametrize("secret", [("AKIDsample", "a-forged-key"), ("AKIDother", "sample-secret-key")])
async def test_a_request_signed_with_another_key_is_refused_for_good(provider, secret):
    stand_in, _, with_key = provider
    with pytest.raises(Refused, match="AuthFailure|Signature|InvalidAccessKeyId"):
        await with_key(*secret).send(PHONE, REMINDER)
    assert stand_in.sent == [] and stand_in.refused == 1


async def test_a_template_not_configured_is_refused_before_sending(provider):
    stand_in, gateway, _ = provider
    with pytest.raises(Refused, match="no template for bill_overdue"):
        await gateway.send(PHONE, Sms("bill_overdue", ("B1", "¥1.00", "x"), "zh_Hans", "逾期"))
    assert stand_in.sent == []


# (provider, the provider's answer, what the outbox gets, counted as an attempt, the wait asked for)
REFUSALS = [
    ("tencent", "LimitExceeded.PhoneNumberDailyLimit", NotNow, False, timedelta(hours=1)),
    ("tencent", "LimitExceeded.PhoneNumberThirtySecondLimit", NotNow, False, timedelta(seconds=30)),
    ("tencent", "FailedOperation.TemplateIncorrectOrUnapproved", Refused, None, None),
    ("tencent", "InvalidParameterValue.IncorrectPhoneNumber", Refused, None, None),
    ("tencent", "UnauthorizedOperation.SmsSdkAppIdVerifyFail", Refused, None, None),
    ("tencent", "InternalError.Timeout", NotNow, True, None),
    ("tencent", 502, NotNow, True, None),
    ("aliyun", "isv.BUSINESS_LIMIT_CONTROL", NotNow, False, timedelta(minutes=5)),
    ("aliyun", "isv.MOBILE_NUMBER_ILLEGAL", Refused, None, None),
    ("aliyun", "isv.SMS_TEMPLATE_ILLEGAL", Refused, None, None),
    ("aliyun", "isv.SMS_SIGNATURE_ILLEGAL", Refused, None, None),
    ("aliyun", "isp.SYSTEM_ERROR", NotNow, True, None),
    ("aliyun", 503, NotNow, True, None),
]


@pytest.mark.parametrize(("name", "answer", "outcome", "counted", "after"), REFUSALS)
async def test_refusals_map_to_retry_later_or_give_up(aiohttp_server, name, answer, outcome, counted, after):
    stand_in_type, gateway_type = PROVIDERS[name]
    stand_in = stand_in_type(dict(KEYS), answer=answer)
    server = await aiohttp_server(stand_in.app())
    gateway = gateway_type(Account("AKIDsample", "sample-secret-key", "信医", TEMPLATES, sdk_app_id="1400000001",
                                   endpoint=str(server.make_url("")).rstrip("/")))
    with pytest.raises(outcome) as raised:
        await gateway.send(PHONE, REMINDER)
    if outcome is NotNow:
        assert (raised.value.counted, raised.value.after) == (counted, after)
    assert PHONE not in str(raised.value)  # what the outbox keeps as the last error is masked
    if isinstance(answer, str) and stand_in.sent:
        assert "139****5678" in str(raised.value)


def test_every_status_notice_has_an_sms_template_kind():
    """What configuration may name (XINYI_SMS_TEMPLATES) covers every status notice the sender composes."""
    from bot.sms import TEMPLATES
    from bot.wechat_sender import STATUS_TEXTS

    assert {f"status_{key}" for key in (*STATUS_TEXTS, "enrolled")} == {key for key in TEMPLATES if key.startswith("status_")}
