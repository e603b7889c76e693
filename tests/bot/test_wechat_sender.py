"""The outbox over WeChat: real bills from the core (Beijing policy), sent to the fake WeChat
API on loopback; SMS is a recording stand-in passed in. The `world` sends every notice by WeChat
(SMS only where WeChat cannot reach); the policies' own channels are tested with `channels`."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import select

from billing import members, outbox, visits
from billing.core import Core
from billing.outbox import enqueue
from billing.payments import pay_at_hospital
from billing.sweep import sweep
from bot import wechat_dedupe
from bot.sandbox.fake_wechat_api import FakeWeChat
from bot.sms import Sms
from bot.wechat_api import WeChatApi
from bot.wechat_sender import SANDBOX_TEMPLATES, SMS, WeChatSender
from storage.models import Bill, Outbox, WeChatUnreachable
from wechat_support import OPENID, SAMPLE, on_fake

from conftest import DUE
from handlers.i18n import moment, money, t

PAYER = "110105198503120012"  # 张伟 in the demo registry
MOTHER = "110105194908150027"  # 张秀英
PHONE = "13912345678"
TEMPLATE = "/cgi-bin/message/template/send"
CUSTOM = "/cgi-bin/message/custom/send"


@dataclass
class RecordingSms:
    sent: list[tuple[str, str]] = field(default_factory=list)  # (phone, text)
    messages: list[Sms] = field(default_factory=list)

    async def send(self, phone: str, sms: Sms) -> None:
        self.sent.append((phone, sms.text))
        self.messages.append(sms)


@dataclass
class World:
    core: Core
    fake: FakeWeChat
    sender: WeChatSender
    sms: RecordingSms
    payer_id: int

    async def drain(self) -> tuple[int, int]:
        """Until nothing more is due: an SMS a notice queued goes in the next round."""
        sent = failed = 0
        while True:
            more = await outbox.drain(self.core.db, self.sender, self.core.clock.now)
            if more == (0, 0):
                return sent, failed
            sent, failed = sent + more[0], failed + more[1]

    async def bill(self, id_number: str = PAYER, amount_fen: int = 3050, n: int = 1) -> Bill:
        await visits.open_visit(self.core, "H1", {"visit_no": f"V{n}", "id_number": id_number, "department": "内科",
                                                  "kind": "outpatient", "exclusion": None})
        await visits.post_charge(self.core, "H1", f"V{n}", {"charge_no": f"C{n}", "category": "exam", "name": "血常规",
                                                           "amount_fen": amount_fen, "prepaid": False})
        answer = await visits.checkout(self.core, "H1", f"V{n}", {"items": [
            {"charge_no": f"C{n}", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": amount_fen}]})
        async with self.core.db.transaction() as session:
            return await session.scalar(select(Bill).where(Bill.bill_no == answer["bill_no"]))

    def templates(self) -> list[dict[str, Any]]:
        return [call.body for call in self.fake.calls_to(TEMPLATE)]

    def texts(self) -> list[str]:
        return [call.body["text"]["content"] for call in self.fake.calls_to(CUSTOM)]


@pytest.fixture
async def world(make_core, aiohttp_server):
    core = await make_core("beijing-shijingshan")
    core.policy = replace(core.policy, notice_channels={}, reminder_channels=())  # WeChat; SMS where it cannot reach
    fake = FakeWeChat(SAMPLE.appid, SAMPLE.secret)
    api = WeChatApi(core.db, on_fake(SAMPLE, await aiohttp_server(fake.app())), clock=core.clock)
    sms = RecordingSms()
    enrolment = await members.enrol(core, openid=OPENID, name="张伟", id_number=PAYER, phone=PHONE,
                                    consent_version=core.policy.consent_version,
                                    commitment_version=core.policy.commitment_version)
    yield World(core, fake, WeChatSender(core, api, SANDBOX_TEMPLATES, sms=sms), sms, enrolment.member_id)
    await api.close()


async def statuses(core: Core, lane: str = outbox.NOTICES) -> dict[str, str]:
    async with core.db.transaction() as session:
        rows = await session.scalars(select(Outbox).where((Outbox.kind == outbox.EVENT) == (lane == outbox.EVENTS)))
        return {row.dedupe_key: row.status for row in rows}


async def test_a_bill_notice_is_a_template_message_with_the_cashier_link(world):
    bill = await world.bill()
    assert await world.drain() == (2, 0)  # the enrolment's status change (told in the chat: skipped) and the bill
    [sent] = world.templates()
    assert sent["touser"] == OPENID and sent["template_id"] == SANDBOX_TEMPLATES["bill_issued"]
    assert sent["url"] == world.core.pay_url(bill.pay_token) + "?lang=zh_Hans"
    data = {name: value["value"] for name, value in sent["data"].items()}
    assert (data["keyword1"], data["keyword2"]) == (bill.bill_no, money(3050, "zh_Hans"))
    assert data["keyword3"] == moment(DUE, "zh_Hans") and data["first"].startswith("您的就诊账单已出")  # due in 48 h, China time
    assert world.texts() == [] and set((await statuses(world.core)).values()) == {"sent"}


@pytest.mark.parametrize("locale", ["en", "zh_Hant"])
async def test_the_notice_and_its_cashier_link_follow_the_members_locale(world, locale):
    async with world.core.db.transaction() as session:
        payer = await session.get(members.Member, world.payer_id)
        payer.locale = locale
    bill = await world.bill(amount_fen=123456)
    await world.drain()
    [sent] = world.templates()
    data = {name: value["value"] for name, value in sent["data"].items()}
    assert data == {"first": t("您的就诊账单已出，请按时付款。", locale), "keyword1": bill.bill_no,
                    "keyword2": money(123456, locale), "keyword3": moment(DUE, locale),
                    "remark": t("点这里查看明细并付款。", locale)}
    assert money(123456, "en") == "CN¥1,234.56"  # Babel's (CLDR's) symbol for the yuan outside zh_Hans
    assert sent["url"] == f"{world.core.pay_url(bill.pay_token)}?lang={locale}"


async def test_a_relatives_bill_names_the_patient(world):
    await members.bind_dependent(world.core, world.payer_id, "parent", "张秀英", MOTHER)
    await world.bill(MOTHER)
    await world.drain()
    assert world.templates()[0]["data"]["first"]["value"].startswith("张秀英的就诊账单已出")


async def test_reminders_overdue_and_suspension_reach_the_member(world):
    await world.bill()
    await world.drain()
    world.core.clock.advance(hours=49)
    await sweep(world.core, sender=world.sender)
    kinds = [body["template_id"] for body in world.templates()]
    assert kinds == [SANDBOX_TEMPLATES[k] for k in ("bill_issued", "bill_overdue", "bill_reminder")]
    assert world.texts() == ["您的信用就医服务已暂停：有账单逾期未付。付清后即可恢复。回复“账单”查看。"]


async def test_a_member_who_refused_our_messages_is_recorded_and_reached_by_sms(world):
    world.fake.refuse(OPENID, 43101)
    bill = await world.bill()
    assert await world.drain() == (3, 0)  # the bill, then its SMS: no retry of WeChat, ever
    [(phone, text)] = world.sms.sent
    assert phone == PHONE and bill.bill_no in text and "¥30.50" in text and world.core.pay_url(bill.pay_token) in text
    async with world.core.db.transaction() as session:
        assert (await session.get(WeChatUnreachable, OPENID)).errcode == 43101

    world.core.clock.advance(hours=25)
    await sweep(world.core, sender=world.sender)  # the 24 h reminder: straight to SMS, WeChat not tried
    await world.drain()
    assert len(world.fake.calls_to(TEMPLATE)) == 1 and len(world.sms.sent) == 2

    turn = wechat_dedupe.UserLocks(world.core.db, world.core.clock).reserve(OPENID)
    await wechat_dedupe.claim(world.core.db, "msg:1", OPENID, world.core.clock.now(), turn)  # the member writes to us
    world.fake.refuse(OPENID, 0)
    world.core.clock.advance(hours=24)
    await sweep(world.core, sender=world.sender)
    await world.drain()
    assert len(world.fake.calls_to(TEMPLATE)) == 3 and len(world.sms.sent) == 2  # overdue + reminder by WeChat again


async def test_a_status_change_past_the_48_hour_window_goes_by_sms(world):
    await world.bill()
    await world.drain()
    world.fake.fail_next(CUSTOM, 45015)
    world.core.clock.advance(hours=49)
    await sweep(world.core, sender=world.sender)
    await world.drain()
    assert world.sms.sent == [(PHONE, "您的信用就医服务已暂停：有账单逾期未付。付清后即可恢复。回复“账单”查看。")]


async def test_a_member_without_wechat_gets_sms(world):
    await members.enrol(world.core, openid=None, name="张秀英", id_number=MOTHER, phone="13800001111",
                        consent_version=world.core.policy.consent_version,
                        commitment_version=world.core.policy.commitment_version)
    await world.bill(MOTHER)
    await world.drain()
    world.core.clock.advance(seconds=30)  # one SMS to a phone in 30 s, as the providers allow
    await world.drain()
    assert world.templates() == []
    (phone, enrolled), (_, billed) = world.sms.sent  # enrolled at a window, then the bill
    assert phone == "13800001111" and enrolled.startswith("您已开通信用就医服务") and "¥30.50" in billed


async def test_a_reminder_for_a_bill_paid_meanwhile_is_not_sent(world):
    bill = await world.bill()
    await world.drain()
    await pay_at_hospital(world.core, "H1", bill.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 3050})
    await world.core.db.run(partial(
        outbox.enqueue, kind="bill_reminder", member_id=world.payer_id, dedupe_key="late-reminder",
        payload={"bill_no": bill.bill_no, "unpaid_fen": 3050, "due_at": bill.due_at.isoformat(), "offset_hours": 24},
        now=world.core.clock.now(),
    ))
    await world.drain()
    assert len(world.templates()) == 1 and (await statuses(world.core))["late-reminder"] == "sent"


async def test_a_payment_tells_the_payer_what_arrived_and_that_the_line_is_back(world):
    bill = await world.bill(amount_fen=3050)
    await world.drain()
    await pay_at_hospital(world.core, "H1", bill.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 1000})
    await pay_at_hospital(world.core, "H1", bill.bill_no, {"payment_no": "P2", "channel": "window", "amount_fen": 2050})
    await world.drain()
    assert world.texts() == [
        "已收到付款 ¥10.00。\n这张账单还差 ¥20.50。\n现在可用额度 ¥1,979.50。回复 额度 查看。",
        "已收到付款 ¥20.50。\n这张账单已付清。\n现在可用额度 ¥2,000.00。回复 额度 查看。",
    ]


async def test_programme_events_stay_out_of_the_notices_lane_and_unknown_kinds_are_retried(world):
    def queue(session):
        for kind in (outbox.EVENT, "carrier_pigeon"):
            outbox.enqueue(session, kind=kind, member_id=world.payer_id, dedupe_key=kind,
                           payload={"bill_no": "B1", "unpaid_fen": 100}, now=world.core.clock.now())

    await world.core.db.run(queue)
    assert await world.drain() == (1, 1)  # the enrolment's status change, and the pigeon that found no channel
    assert (await statuses(world.core, outbox.EVENTS))[outbox.EVENT] == "pending"
    assert (await statuses(world.core))["carrier_pigeon"] == "pending"


def test_every_bill_notice_needs_its_template(world):
    with pytest.raises(ValueError, match="bill_overdue"):
        WeChatSender(world.core, world.sender.api, {"bill_issued": "a", "bill_reminder": "b"})


async def test_a_payment_for_a_relative_names_the_patient(world):
    await members.bind_dependent(world.core, world.payer_id, "parent", "张秀英", MOTHER)
    bill = await world.bill(MOTHER, amount_fen=3050)
    await world.drain()
    await pay_at_hospital(world.core, "H1", bill.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 3050})
    await world.drain()
    assert world.texts() == ["已收到张秀英的就诊费用 ¥30.50。\n这张账单已付清。\n现在可用额度 ¥2,000.00。回复 额度 查看。"]


async def test_a_suspended_member_is_told_what_lifts_it_and_shown_no_credit(world):
    """Under a policy that keeps a suspension until credit repair (Nantong), neither the
    suspension notice nor a payment receipt promises that paying restores the service, and
    the receipt shows no credit the member cannot use."""
    from billing.policy import load_policy

    world.core.policy = load_policy("nantong")
    first, second = await world.bill(n=1), await world.bill(n=2)
    world.core.clock.advance(days=31, hours=1)
    await sweep(world.core)
    await pay_at_hospital(world.core, "H1", first.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 3050})
    await pay_at_hospital(world.core, "H1", second.bill_no, {"payment_no": "P2", "channel": "window", "amount_fen": 3050})
    await world.drain()
    suspended, *receipts = world.texts()
    assert "付清后还要办理信用修复才能恢复" in suspended and "付清后即可恢复" not in suspended
    assert len(receipts) == 2
    for receipt in receipts:
        assert "可用额度" not in receipt and "您的信用就医还在暂停中：回复“信用修复”查看还差什么。" in receipt

    await members.renew_commitment(world.core, world.payer_id, world.core.policy.commitment_version)
    assert await members.repair_credit(world.core, world.payer_id) == "active"  # an operator's repair: the member is told
    await world.drain()
    assert world.texts()[-1] == t("您的信用就医服务已恢复，可以继续先看病、后付费。")


async def test_a_receipt_shows_the_credit_left_to_an_active_member_only(world):
    first, second = await world.bill(n=1), await world.bill(n=2)
    world.core.clock.advance(hours=49)
    await sweep(world.core)  # Beijing: overdue, advanced, suspended
    await pay_at_hospital(world.core, "H1", first.bill_no, {"payment_no": "P1", "channel": "window", "amount_fen": 3050})
    await world.drain()
    assert "逾期的账单都付清后，信用就医会自动恢复" in world.texts()[-1] and "可用额度" not in world.texts()[-1]
    await pay_at_hospital(world.core, "H1", second.bill_no, {"payment_no": "P2", "channel": "window", "amount_fen": 3050})
    await world.drain()
    assert "现在可用额度 ¥2,000.00" in "\n".join(world.texts()[-2:])


async def test_a_new_tier_and_an_over_limit_suspension_are_told_in_plain_words(world):
    def queue(session):
        now = world.core.clock.now()
        enqueue(session, kind="line_rerated", member_id=world.payer_id, dedupe_key="rerated", now=now,
                payload={"score": 550, "before_fen": 300000, "limit_fen": 100000, "available_fen": 40000, "value_added": False})
        enqueue(session, kind="status_changed", member_id=world.payer_id, dedupe_key="over", now=now,
                payload={"from": "active", "to": "suspended", "reason": "ladder:over_limit"})

    await world.core.db.run(queue)
    await world.drain()
    rerated, suspended = world.texts()
    assert rerated == "您的信用分现在是 550 分，信用就医额度从 ¥3,000.00 调整为 ¥1,000.00。\n现在可用 ¥400.00。回复 额度 查看。"
    assert suspended.startswith("您的信用就医服务已暂停：用掉的超过了额度。") and "逾期" not in suspended
@pytest.fixture
def channels(world):
    """The world under its policy's own channels (Beijing: WeChat and SMS at leaving, +24 h, +48 h)."""
    from billing.policy import load_policy

    world.core.policy = load_policy("beijing-shijingshan")
    return world


async def test_a_beijing_bill_goes_by_wechat_and_by_sms_with_masked_data_only(channels):
    bill = await channels.bill()
    await channels.drain()
    [template] = channels.templates()
    assert template["template_id"] == SANDBOX_TEMPLATES["bill_issued"]
    [sms] = channels.sms.messages
    assert (sms.template, sms.params) == ("bill_issued", (bill.bill_no, money(3050, "zh_Hans"), moment(DUE, "zh_Hans")))
    assert channels.sms.sent[0][0] == PHONE
    assert PAYER not in repr(sms) and PHONE not in repr(sms) and "张伟" not in repr(sms)
    async with channels.core.db.transaction() as session:
        row = await session.scalar(select(Outbox).where(Outbox.kind == SMS))
    assert (row.status, row.member_id, row.payload["notice"]) == ("sent", channels.payer_id, "bill_issued")
    assert PHONE not in str(row.payload) and PAYER not in str(row.payload)


async def test_a_nantong_reminder_past_24_hours_is_an_sms_only(channels):
    from billing.policy import load_policy

    channels.core.policy = load_policy("nantong")
    bill = await channels.bill()
    await channels.drain()
    channels.core.clock.advance(hours=24, minutes=1)
    await sweep(channels.core, sender=channels.sender)
    await channels.drain()
    assert SANDBOX_TEMPLATES["bill_reminder"] not in [body["template_id"] for body in channels.templates()]
    [reminder] = channels.sms.messages
    assert (reminder.template, reminder.params[0]) == ("bill_reminder", bill.bill_no)


async def test_sms_to_one_phone_keep_to_the_rate_limit_across_workers(channels):
    """The limit is counted from the outbox's sent SMS: another sender (another worker) keeps to it, and
    a try the limit held back is not counted as an attempt."""
    first, second = await channels.bill(n=1), await channels.bill(n=2)
    await channels.drain()
    assert [sms.params[0] for sms in channels.sms.messages] == [first.bill_no]
    async with channels.core.db.transaction() as session:
        held = await session.scalar(select(Outbox).where(Outbox.kind == SMS, Outbox.status == "pending"))
    assert held.attempts == 0 and "per-phone SMS limit" in held.last_error and PHONE not in held.last_error
    assert held.next_attempt_at == channels.core.clock.now() + timedelta(seconds=30)

    other = WeChatSender(channels.core, channels.sender.api, SANDBOX_TEMPLATES, sms=channels.sms,
                         sms_per_phone=((1, 30), (2, 3600)))
    channels.core.clock.advance(seconds=30)
    assert await outbox.drain(channels.core.db, other, channels.core.clock.now) == (1, 0)
    assert [sms.params[0] for sms in channels.sms.messages] == [first.bill_no, second.bill_no]
    await channels.bill(n=3)
    channels.core.clock.advance(seconds=60)
    await outbox.drain(channels.core.db, other, channels.core.clock.now)  # the bill, and its SMS is held back
    await outbox.drain(channels.core.db, other, channels.core.clock.now)
    assert len(channels.sms.messages) == 2  # two an hour, with this worker's setting


async def test_an_operators_resend_goes_by_the_channel_chosen_not_the_policys(channels):
    from billing import console
    from billing.operators import add_operator, signed_in

    bill = await channels.bill()
    await channels.drain()  # Beijing: WeChat and SMS
    channels.core.clock.advance(minutes=1)
    operator = await signed_in(channels.core, await add_operator(channels.core, "ops", "a long enough password", "operator"))
    await console.resend_notice(channels.core, operator, bill.bill_no, "sms", "no WeChat on this phone")
    await channels.drain()
    assert len(channels.templates()) == 1 and [sms.template for sms in channels.sms.messages] == ["bill_issued"] * 2
    await console.resend_notice(channels.core, operator, bill.bill_no, "wechat", "lost it")
    await channels.drain()
    assert len(channels.templates()) == 2 and len(channels.sms.messages) == 2


# --- partners' offers (billing/marketing.py): WeChat only, while the member still says yes ---

async def offered(world: World, texts: dict[str, str] | None = None) -> None:
    from billing import console, marketing
    from billing.operators import add_operator, signed_in

    await marketing.subscribe(world.core, world.payer_id)
    operator = await signed_in(world.core, await add_operator(world.core, "ops", "a long enough password", "operator"))
    assert await console.send_offer(world.core, operator, "某银行信用卡中心",
                                    texts or {"zh_Hans": "体检套餐八折"}, "campaign") == 1


async def marketing_row(world: World) -> Outbox:
    async with world.core.db.transaction() as session:
        return await session.scalar(select(Outbox).where(Outbox.kind == "marketing"))


@pytest.mark.parametrize("locale, text", [
    ("zh_Hans", "【优惠信息】某银行信用卡中心\n体检套餐八折\n回复 退订 不再接收。"),
    ("en", "[Offer] 某银行信用卡中心\n20% off health checks\nReply STOP to receive no more."),
    ("zh_Hant", "【優惠資訊】某银行信用卡中心\n体检套餐八折\n回覆 退訂 不再接收。"),  # no zh_Hant text: the zh_Hans one
])
async def test_an_offer_is_a_customer_service_message_in_the_members_language_that_says_how_to_stop(world, locale, text):
    async with world.core.db.transaction() as session:
        (await session.get(members.Member, world.payer_id)).locale = locale
    await offered(world, {"zh_Hans": "体检套餐八折", "en": "20% off health checks"})
    await world.drain()
    assert world.texts() == [text] and world.templates() == [] and world.sms.sent == []
    assert (await marketing_row(world)).status == "sent"


async def test_an_offer_withdrawn_before_it_goes_is_dropped_not_sent(world):
    from billing import marketing

    await offered(world)
    await marketing.unsubscribe(world.core, world.payer_id)
    await world.drain()
    assert world.texts() == [] and world.sms.sent == []
    row = await marketing_row(world)
    assert (row.status, row.last_error, row.sent_at) == ("dropped", "consent_withdrawn", None)


@pytest.mark.parametrize("errcode, reason", [(45015, "out_of_window"), (43101, "wechat_unreachable")])
async def test_an_offer_wechat_will_not_take_is_dropped_and_never_goes_by_sms(world, errcode, reason):
    await offered(world)
    world.fake.fail_next(CUSTOM, errcode)
    await world.drain()
    assert len(world.texts()) == 1 and world.sms.sent == []  # refused once, never tried again
    row = await marketing_row(world)
    assert (row.status, row.last_error) == ("dropped", reason)


async def test_an_offer_to_a_member_wechat_refused_before_is_dropped_without_trying(world):
    world.fake.refuse(OPENID, 43101)
    await world.bill()
    await world.drain()  # the bill notice finds out, and goes by SMS
    sms_before = len(world.sms.sent)
    await offered(world)
    await world.drain()
    assert world.texts() == [] and len(world.sms.sent) == sms_before
    assert (await marketing_row(world)).last_error == "wechat_unreachable"
