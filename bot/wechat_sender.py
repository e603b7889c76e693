"""The outbox's sender over WeChat: what the core decided to tell people, in their language.

Bill notices go as template messages (they reach a member whenever we like), the rest as
customer-service messages (only within 48 hours of the member's last message; after that,
and for members WeChat will not deliver to, by SMS). A member who unfollowed or refused our
messages (43004, 43101) is recorded once and not tried again until they write to us; the
notice then goes by SMS and counts as sent, never retried forever.

The policy says each notice's channel ([notices]: WeChat, SMS or both). An SMS is a row of
its own in the outbox (kind `sms`, queued once by the notice it follows), sent through
bot/sms.py's gateway within the per-phone rate limit counted from the outbox's sent SMS,
so that the limit holds across workers and a retry of one channel never repeats the other.
An SMS-only notice to a member without a phone goes by WeChat.

A partner's offer (kind `marketing`, billing/marketing.py) goes only while the member still says
yes to offers, asked again at each try; else it is dropped, not sent. It goes as a customer-service
message only, never as a template message (WeChat's rules keep marketing out of those) nor by SMS:
where WeChat cannot reach the member, or they have not written within 48 hours, it is dropped too.

What the insurer and the credit system are told (the advance, a credit report) are programme
events in the outbox's other lane, sent by bot/event_webhook.py.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from billing import marketing, outbox
from billing.core import Core
from billing.policy import CHANNELS
from bot.sms import PER_PHONE, LogSms, Sms, SmsGateway, rate_wait
from bot.wechat_api import OUT_OF_WINDOW, WeChatApi, WeChatApiError
from handlers.i18n import N_, moment, money, t, with_lang
from storage.models import Bill, Member, Outbox, Visit, WeChatUnreachable

log = logging.getLogger(__name__)

TEMPLATE_KINDS = ("bill_issued", "bill_reminder", "bill_overdue")
SERVICE_KINDS = ("status_changed", "refund_due", "payment_received", "line_rerated")
SMS = "sms"  # the outbox kind of an SMS that follows a notice
SETTLED_BILLS = ("paid", "written_off")
# Moves the member made in the chat themselves: the conversation already said so.
SELF_SERVICE_REASONS = ("enrolled", "member_cancelled", "credit_repair:member")
SANDBOX_TEMPLATES = {kind: f"sandbox-{kind}" for kind in TEMPLATE_KINDS}

ENROLLED_TEXT = N_("您已开通信用就医服务：在本项目的医院可以先看病、后付费。")
STATUS_TEXTS = {
    "active": N_("您的信用就医服务已恢复，可以继续先看病、后付费。"),
    "suspended": N_("您的信用就医服务已暂停：有账单逾期未付。付清后即可恢复。回复“账单”查看。"),
    # Where the policy keeps a suspension until credit repair, paying alone does not restore it.
    "suspended_until_repair": N_("您的信用就医服务已暂停：有账单逾期未付。付清后还要办理信用修复才能恢复，回复“信用修复”查看还差什么。"),
    "suspended_over_limit": N_("您的信用就医服务已暂停：用掉的超过了额度。付掉一部分账单、回到额度以内就会恢复。回复“账单”查看。"),
    "revoked": N_("由于多次逾期，您的信用就医资格已取消。如有疑问，请回复“帮助”。"),
    "blacklisted": N_("您的欠款长期未付，已按信用承诺书报送信用记录。请尽快付清。回复“账单”查看。"),
    "cancelled": N_("您已解约信用就医服务。想再用时回复“开通”即可重新签约。"),
}


@dataclass(frozen=True)
class Notice:
    title: str
    fields: tuple[str, ...]  # the template's keyword1, keyword2, ...
    url: str | None
    sms: tuple[str, tuple[str, ...]]  # its SMS template (bot/sms.py TEMPLATES) and the template's parameters

    def template_data(self, remark: str) -> dict[str, str]:
        data = {"first": self.title, **{f"keyword{n}": value for n, value in enumerate(self.fields, 1)}}
        return {**data, "remark": remark}

    def text(self, locale: str) -> str:
        lines = [self.title, *self.fields]
        if self.url:
            lines.append(t("付款链接：{url}", locale, url=self.url))
        return "\n".join(lines)

    def as_sms(self, locale: str) -> Sms:
        template, params = self.sms
        return Sms(template, params, locale, self.text(locale))


@dataclass(frozen=True)
class Recipient:
    member_id: int
    openid: str | None
    phone: str | None
    locale: str
    reachable: bool  # False: WeChat refused delivery before; go straight to SMS
    status: str  # the member's status now: what is left on the line is told only to an active one


class WeChatSender:
    def __init__(self, core: Core, api: WeChatApi, templates: Mapping[str, str], *,
                 sms: SmsGateway | None = None, sms_per_phone: tuple[tuple[int, int], ...] = PER_PHONE) -> None:
        missing = [kind for kind in TEMPLATE_KINDS if not templates.get(kind)]
        if missing:
            raise ValueError(f"template ids are missing for {', '.join(missing)}")
        self.core = core
        self.api = api
        self.templates = dict(templates)
        self.sms = sms or LogSms()
        self.sms_per_phone = sms_per_phone

    async def send(self, message: Outbox) -> None:
        kind, payload = message.kind, message.payload
        if kind not in (*TEMPLATE_KINDS, *SERVICE_KINDS, SMS, marketing.KIND) or message.member_id is None:
            raise ValueError(f"no channel for outbox message {message.id} ({kind}, member {message.member_id})")
        recipient = await self._recipient(message.member_id)
        if kind == marketing.KIND:
            await self._send_offer(message, recipient)
            return
        if kind == SMS:
            await self._send_sms(message, recipient)
            return
        notice = await self._compose(kind, payload, recipient)
        if notice is None:
            return
        # An operator's resend names its channel (billing/console.py); else the policy says.
        channels = CHANNELS[payload["channel"]] if "channel" in payload else self.core.policy.channels(
            kind, payload.get("offset_hours"))
        if "sms" in channels and recipient.phone is not None:
            await outbox.follow_up(self.core.db, message, SMS, self.core.clock.now())
            if "wechat" not in channels:
                return
        if recipient.openid and recipient.reachable:
            try:
                if kind in TEMPLATE_KINDS:
                    await self.api.send_template(recipient.openid, self.templates[kind],
                                                 notice.template_data(t("点这里查看明细并付款。", recipient.locale)), notice.url)
                else:
                    await self.api.send_text(recipient.openid, notice.text(recipient.locale))
                return
            except WeChatApiError as exc:
                if exc.unreachable:
                    await self._record_unreachable(recipient.openid, exc.errcode)
                elif exc.errcode != OUT_OF_WINDOW:
                    raise
                log.info("outbox %s: WeChat cannot reach member %s (%s); sending by SMS",
                         message.id, recipient.member_id, exc.errcode)
        if recipient.phone is None:
            log.warning("outbox %s (%s): member %s has neither WeChat nor a phone; nothing more to try",
                        message.id, kind, recipient.member_id)
            return
        await outbox.follow_up(self.core.db, message, SMS, self.core.clock.now())

    async def _send_offer(self, message: Outbox, to: Recipient) -> None:
        """A partner's offer, while the member still says yes: by WeChat, or not at all (outbox.Dropped)."""
        offer = await marketing.to_send(self.core, message.payload["offer_id"], to.member_id)
        if not (to.openid and to.reachable):
            raise outbox.Dropped("wechat_unreachable")
        text = "\n".join((t("【优惠信息】{sender}", to.locale, sender=offer.sender), offer.text(to.locale),
                          t("回复 退订 不再接收。", to.locale)))
        try:
            await self.api.send_text(to.openid, text)
        except WeChatApiError as exc:
            if exc.unreachable:
                await self._record_unreachable(to.openid, exc.errcode)
                raise outbox.Dropped("wechat_unreachable") from exc
            if exc.errcode == OUT_OF_WINDOW:
                raise outbox.Dropped("out_of_window") from exc
            raise

    async def _send_sms(self, message: Outbox, to: Recipient) -> None:
        """The SMS of a notice, composed now (a bill paid meanwhile is not chased), within the rate limit."""
        payload = dict(message.payload)
        notice = await self._compose(payload.pop("notice"), payload, to)
        if notice is None or to.phone is None:
            return
        wait = await self._sms_wait(to.member_id)
        if wait is not None:
            raise outbox.NotNow(f"the per-phone SMS limit: next in {wait}", wait, counted=False)
        await self.sms.send(to.phone, notice.as_sms(to.locale))

    async def _sms_wait(self, member_id: int) -> timedelta | None:
        """How long until the member's phone may get another SMS; None: now. Counted from the SMS the
        outbox sent to this member, in every worker."""
        now = self.core.clock.now()
        since = now - timedelta(seconds=max(seconds for _, seconds in self.sms_per_phone))
        async with self.core.db.transaction() as session:
            sent = list(await session.scalars(select(Outbox.sent_at).where(
                Outbox.member_id == member_id, Outbox.kind == SMS, Outbox.status == "sent", Outbox.sent_at > since)))
        return rate_wait(sent, self.sms_per_phone, now)

    async def _recipient(self, member_id: int) -> Recipient:
        async with self.core.db.transaction() as session:
            member = await session.get(Member, member_id)
            if member is None:
                raise ValueError(f"member {member_id} does not exist")
            refused = member.openid is not None and await session.get(WeChatUnreachable, member.openid) is not None
        phone = self.core.pii.decrypt(member.phone_enc) if member.phone_enc else None
        return Recipient(member.id, member.openid, phone, member.locale, reachable=not refused, status=member.status)

    async def _compose(self, kind: str, payload: dict[str, Any], to: Recipient) -> Notice | None:
        locale = to.locale
        if kind == "status_changed":
            if payload.get("reason") in SELF_SERVICE_REASONS and to.openid:
                return None
            return Notice(t(self._status_text(payload), locale), (), None, (f"status_{self._status_key(payload)}", ()))
        if kind == "refund_due":
            refund = money(payload["amount_fen"], locale)
            return Notice(t("您有一笔退款，将原路退回，请留意到账。", locale),
                          (t("账单号：{bill_no}", locale, bill_no=payload["bill_no"]), t("退款金额：{amount}", locale, amount=refund)),
                          None, ("refund_due", (payload["bill_no"], refund)))
        if kind == "payment_received":
            # The payer sees at once that the money arrived and the line is back, in plain words.
            owed = (t("这张账单已付清。", locale) if not payload["unpaid_fen"]
                    else t("这张账单还差 {amount}。", locale, amount=money(payload["unpaid_fen"], locale)))
            patient = await self._patient_of(payload["bill_no"], to.member_id)
            received = (t("已收到{name}的就诊费用 {amount}。", locale, name=patient, amount=money(payload["applied_fen"], locale))
                        if patient else t("已收到付款 {amount}。", locale, amount=money(payload["applied_fen"], locale)))
            return Notice(received, (owed, self._line_after_payment(payload, to)), None,
                          ("payment_received", (money(payload["applied_fen"], locale), money(payload["unpaid_fen"], locale))))
        if kind == "line_rerated":
            return self._rerated(payload, to)
        bill, patient = await self._bill(payload["bill_no"], payload.get("patient_id"), to.member_id)
        if kind != "bill_issued" and bill.status in SETTLED_BILLS:
            log.info("%s for bill %s skipped: it is %s already", kind, bill.bill_no, bill.status)
            return None
        url = with_lang(self.core.pay_url(bill.pay_token), locale)  # the cashier opens in the member's language
        due = moment(bill.due_at, locale)
        if kind == "bill_issued" and not payload["self_pay_fen"]:
            return Notice(t("本次就诊没有需要自付的费用，无需付款。", locale), (bill.bill_no, money(0, locale)), None,
                          ("bill_free", (bill.bill_no,)))
        if kind == "bill_issued":
            title = (t("{name}的就诊账单已出，请按时付款。", locale, name=patient) if patient
                     else t("您的就诊账单已出，请按时付款。", locale))
            amount = payload["self_pay_fen"]
        elif kind == "bill_reminder":
            title, amount = t("您有一笔就诊账单待付款。", locale), payload["unpaid_fen"]
        else:
            title, amount = t("您的就诊账单已逾期，请尽快付款，以免影响信用就医。", locale), payload["unpaid_fen"]
        fields = (bill.bill_no, money(amount, locale), due)
        return Notice(title, fields, url, (kind, fields))

    def _status_text(self, payload: dict[str, Any]) -> str:
        key = self._status_key(payload)
        return ENROLLED_TEXT if key == "enrolled" else STATUS_TEXTS[key]

    def _status_key(self, payload: dict[str, Any]) -> str:
        if payload.get("reason") == "enrolled":
            return "enrolled"
        if payload["to"] == "suspended" and self.core.policy.repair_required:
            return "suspended_until_repair"
        if payload["to"] == "suspended" and payload.get("reason") == "ladder:over_limit":
            return "suspended_over_limit"
        return payload["to"]

    def _rerated(self, payload: dict[str, Any], to: Recipient) -> Notice:
        """The new tier, and what it leaves to use, to a member who can use it."""
        locale = to.locale
        changed = (t("您的信用分现在是 {score} 分，信用就医额度从 {before} 调整为 {limit}。", locale, score=payload["score"],
                     before=money(payload["before_fen"], locale), limit=money(payload["limit_fen"], locale))
                   if payload["before_fen"] != payload["limit_fen"]
                   else t("您的信用分现在是 {score} 分，信用就医额度还是 {limit}。", locale, score=payload["score"],
                          limit=money(payload["limit_fen"], locale)))
        extra = (t("您还有住院免押金额度 {amount}：住院不用先交押金。", locale, amount=money(payload["inpatient_fen"], locale))
                 if payload["value_added"] and payload.get("inpatient_fen")
                 else t("您可以享受信用就医增值服务。", locale) if payload["value_added"]
                 else t("信用分 {score} 分起才有增值服务。", locale, score=self.core.policy.value_added_min_score)
                 if self.core.policy.value_added_min_score is not None else "")
        usable = (t("现在可用 {amount}。回复 额度 查看。", locale, amount=money(payload["available_fen"], locale))
                  if to.status == "active" and payload["available_fen"] else t("回复 额度 查看。", locale))
        limit, available = money(payload["limit_fen"], locale), money(payload["available_fen"], locale)
        return Notice(changed, tuple(line for line in (extra, usable) if line), None, ("line_rerated", (limit, available)))

    def _line_after_payment(self, payload: dict[str, Any], to: Recipient) -> str:
        """What is left on the line, to a member who can use it; else what lifts the suspension."""
        if to.status == "active":
            return t("现在可用额度 {amount}。回复 额度 查看。", to.locale, amount=money(payload["available_fen"], to.locale))
        if to.status == "suspended" and self.core.policy.repair_required:
            return t("您的信用就医还在暂停中：回复“信用修复”查看还差什么。", to.locale)
        if to.status == "suspended":
            return t("逾期的账单都付清后，信用就医会自动恢复。回复“账单”查看。", to.locale)
        return t("回复“账单”查看。", to.locale)

    async def _bill(self, bill_no: str, patient_id: int | None, payer_id: int) -> tuple[Bill, str | None]:
        """The bill, and the patient's name when the payer pays for a relative."""
        async with self.core.db.transaction() as session:
            bill = (await session.scalars(select(Bill).where(Bill.bill_no == bill_no))).one()
            patient = await session.get(Member, patient_id) if patient_id not in (None, payer_id) else None
            return bill, patient.name if patient else None

    async def _patient_of(self, bill_no: str, payer_id: int) -> str | None:
        """The patient's name when the payer paid for a relative's visit, as the bill notice names them."""
        async with self.core.db.transaction() as session:
            row = (await session.execute(
                select(Member.id, Member.name).join(Visit, Visit.patient_id == Member.id).join(Bill, Bill.visit_id == Visit.id)
                .where(Bill.bill_no == bill_no))).first()
        return row.name if row is not None and row.id != payer_id else None

    async def _record_unreachable(self, openid: str, errcode: int) -> None:
        now: datetime = self.core.clock.now()
        async with self.core.db.transaction() as session:
            await session.execute(delete(WeChatUnreachable).where(WeChatUnreachable.openid == openid))
            session.add(WeChatUnreachable(openid=openid, errcode=errcode, at=now))
