"""Members in the console: search (name, ID number or its last four, phone or its last four,
bill number), a member's page, and what may be done to a member: credit repair, manual
suspension and restore, and showing a full personal number (asked for with a reason, audited)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web
from sqlalchemy import or_, select

from billing.auditlog import entries
from billing.console import bill_filter, member_filter, repair, restore, reveal, scoped_member, suspend, withdraw_marketing
from billing.errors import BillingError, InvalidInput
from billing.identity import normalise_id_number, normalise_phone
from billing.interest import owed
from billing.marketing import history as marketing_history
from billing.operators import SignedIn
from billing.pii import mask_id_number, mask_phone
from bot.admin.actions import act, action_forms, posted_reason, refused
from bot.admin.frame import page, refusal, table
from bot.admin.guard import require
from bot.admin.history import audit_rows
from bot.admin.marketing import consent_section, dropped_reason
from bot.admin.session import OPERATOR, page_locale
from bot.hospital_api import CORE
from bot.html import esc, tag, wrap
from handlers.flows.bills import BILL_STATUS
from handlers.flows.common import RELATION, STATUS
from handlers.i18n import N_, institution_name, institution_terms, moment, money, t
from storage.models import Bill, CreditLine, FamilyLink, Member, Outbox, Reminder, Staff, StatusChange

ALL = ("operator", "hospital", "community", "auditor")
SHOWN = 50  # search results
QUERY_MAX_CHARS = 50
TAIL_BATCH = 1000  # members decrypted at a time when searching by the last four digits
LINE_KINDS = {"outpatient": N_("门诊额度"), "inpatient": N_("住院额度")}
NOTICE_KINDS = {"bill_issued": N_("账单通知"), "bill_reminder": N_("还款提醒"), "bill_overdue": N_("逾期通知"),
                "status_changed": N_("状态变化通知"), "refund_due": N_("退款通知"), "payment_received": N_("收款通知"),
                "line_rerated": N_("额度调整通知"), "marketing": N_("优惠信息"),
                "event": N_("项目事件"), "sms": N_("短信")}
REVEAL_FIELDS = {"id_number": N_("显示完整身份证号"), "phone": N_("显示完整手机号")}


@dataclass(frozen=True)
class Found:
    id: int
    name: str
    id_number: str  # masked
    status: str


@require(*ALL)
async def search(request: web.Request) -> web.Response:
    core, operator, locale = request.app[CORE], request[OPERATOR], page_locale(request)
    query = request.query.get("q", "").strip()
    results: list[Found] = []
    if query and query.isprintable() and len(query) <= QUERY_MAX_CHARS:  # no NUL or lone surrogate reaches the driver
        async with core.db.transaction() as session:
            bill_no = await session.scalar(select(Bill.bill_no).where(Bill.bill_no == query.upper(),
                                                                      bill_filter(operator.scope)))
        if bill_no is not None:
            raise web.HTTPSeeOther(f"/admin/bills/{bill_no}")
        results = await _find(core, operator, query)
    field = wrap("label", tag("span", t("姓名、身份证号或后四位、手机号或后四位、账单号", locale))
                 + f'<input name="q" value="{esc(query)}" required>')
    search_form = wrap("form", field + tag("button", t("查找", locale), type="submit", class_="button"),
                       method="get", action="/admin/members", role="search")
    rows = [(("markup", tag("a", r.name, href=f"/admin/members/{r.id}")), r.id_number, t(STATUS[r.status], locale))
            for r in results]
    listing = table((t("姓名", locale), t("身份证号", locale), t("状态", locale)), rows,
                    t("没有找到。", locale)) if query else ""
    return await page(request, t("会员", locale), search_form + listing)


async def _find(core, operator: SignedIn, query: str) -> list[Found]:
    """By the lookup HMAC for a whole ID or phone number, by decrypting in batches for the last
    four digits (off the event loop), else by name."""
    scope = member_filter(operator.scope)
    columns = select(Member.id, Member.name, Member.id_number_enc, Member.phone_enc, Member.status).where(scope)
    compact = query.replace(" ", "").upper()
    if len(compact) == 4 and compact[:3].isdigit() and (compact[3].isdigit() or compact[3] == "X"):
        return await _by_tail(core, columns, compact)
    digests = []
    for normalise in (normalise_id_number, normalise_phone):
        try:
            digests.append(core.pii.lookup(normalise(compact)))
        except InvalidInput:
            pass
    async with core.db.transaction() as session:
        if digests:
            rows = (await session.execute(columns.where(or_(Member.id_number_hmac.in_(digests),
                                                            Member.phone_hmac.in_(digests))).limit(SHOWN))).all()
        else:
            rows = (await session.execute(columns.where(Member.name.contains(query, autoescape=True))
                                          .order_by(Member.id).limit(SHOWN))).all()
    return [Found(r.id, r.name, mask_id_number(core.pii.decrypt(r.id_number_enc)), r.status) for r in rows]


async def _by_tail(core, columns, tail: str) -> list[Found]:
    found: list[Found] = []
    after = 0
    while len(found) < SHOWN:
        async with core.db.transaction() as session:
            rows = (await session.execute(columns.where(Member.id > after).order_by(Member.id).limit(TAIL_BATCH))).all()
        found += await asyncio.to_thread(_matching, core.pii, rows, tail)
        if len(rows) < TAIL_BATCH:
            break
        after = rows[-1].id
    return found[:SHOWN]


def _matching(pii, rows, tail: str) -> list[Found]:
    matches = []
    for r in rows:
        id_number = pii.decrypt(r.id_number_enc)
        if id_number.endswith(tail) or (r.phone_enc is not None and pii.decrypt(r.phone_enc).endswith(tail)):
            matches.append(Found(r.id, r.name, mask_id_number(id_number), r.status))
    return matches


def member_id_of(request: web.Request) -> int:
    raw = request.match_info["member_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    return int(raw)


@require(*ALL)
async def member_page(request: web.Request) -> web.Response:
    core, operator, locale = request.app[CORE], request[OPERATOR], page_locale(request)
    member_id = member_id_of(request)
    async with core.db.transaction() as session:
        try:
            member = await session.run_sync(scoped_member, operator.scope, member_id)
        except BillingError:
            return await refusal(request, 404, t("没有这个会员，或不在您的范围内。", locale))
        staff = await session.scalar(select(Staff.name).where(Staff.id == member.onboarded_by_staff_id))
        lines = list(await session.scalars(select(CreditLine).where(CreditLine.member_id == member_id)))
        changes = list(await session.scalars(select(StatusChange).where(StatusChange.member_id == member_id)
                                             .order_by(StatusChange.id.desc())))
        bills = list(await session.scalars(select(Bill).where(Bill.payer_id == member_id, bill_filter(operator.scope))
                                           .order_by(Bill.id.desc())))
        reminders = (await session.execute(select(Bill.bill_no, Reminder.offset_hours, Reminder.at)
                                           .join(Bill, Bill.id == Reminder.bill_id)
                                           .where(Bill.payer_id == member_id, bill_filter(operator.scope))
                                           .order_by(Reminder.id.desc()))).all()
        notices = [n for n in await session.scalars(select(Outbox).where(Outbox.member_id == member_id)
                                                    .order_by(Outbox.id.desc()).limit(100))
                   if operator.scope.everything or _bill_no(n) in ("", *(b.bill_no for b in bills))]
        family = (await session.execute(
            select(FamilyLink.relation, FamilyLink.payer_id, FamilyLink.dependent_id)
            .where(or_(FamilyLink.payer_id == member_id, FamilyLink.dependent_id == member_id))
        )).all()
        relatives = dict((await session.execute(select(Member.id, Member.name).where(
            Member.id.in_({f.payer_id for f in family} | {f.dependent_id for f in family})))).all())
        history = await entries(session, targets=[f"member:{member_id}", *(f"bill:{b.bill_no}" for b in bills)])
        consents = await session.run_sync(marketing_history, member_id)
    id_number = mask_id_number(core.pii.decrypt(member.id_number_enc))
    phone = mask_phone(core.pii.decrypt(member.phone_enc)) if member.phone_enc else "-"
    facts = (
        (t("身份证号", locale), id_number), (t("手机号", locale), phone), (t("状态", locale), t(STATUS[member.status], locale)),
        (t("开通时间", locale), moment(member.commitment_signed_at, locale) if member.commitment_signed_at else "-"),
        (t("协助开通的工作人员", locale), staff or "-"),
    )
    chosen = core.policy.institution(member.institution)
    if core.policy.institutions or member.institution:
        terms = " · " + institution_terms(chosen, locale) if chosen else ""
        facts += ((t("金融机构", locale), institution_name(chosen, member.institution, locale) + terms),)
    now = core.clock.now()
    body = wrap("dl", "".join(wrap("div", tag("dt", k) + tag("dd", v)) for k, v in facts), class_="facts")
    body += await _member_actions(request, member)
    body += tag("h2", t("额度", locale)) + table(
        (t("种类", locale), t("额度", locale), t("已用", locale)),
        [(t(LINE_KINDS[ln.kind], locale), money(ln.limit_fen, locale), money(ln.used_fen, locale)) for ln in lines],
        t("没有额度。", locale))
    body += tag("h2", t("账单", locale)) + table(
        (t("账单号", locale), t("状态", locale), t("自付", locale), t("已付", locale), t("利息", locale), t("到期", locale)),
        [(("markup", tag("a", b.bill_no, href=f"/admin/bills/{b.bill_no}")),
          t(BILL_STATUS[b.status], locale) + (" · " + t("有异议", locale) if b.disputed_at else ""),
          money(b.self_pay_fen, locale), money(b.paid_fen, locale), money(owed(b, now).interest_fen, locale),
          moment(b.due_at, locale)) for b in bills],
        t("没有账单。", locale))
    body += tag("h2", t("状态变化", locale)) + table(
        (t("时间", locale), t("从", locale), t("到", locale), t("原因", locale)),
        [(moment(c.at, locale), t(STATUS[c.from_status], locale), t(STATUS[c.to_status], locale), c.reason)
         for c in changes], t("没有状态变化。", locale))
    body += tag("h2", t("提醒和通知", locale)) + table(
        (t("时间", locale), t("种类", locale), t("账单号", locale), t("发送", locale)),
        [(moment(r.at, locale), t("还款提醒（第 {hours} 小时）", locale, hours=r.offset_hours), r.bill_no, "")
         for r in reminders]
        + [(moment(n.created_at, locale), _notice_kind(n, locale), _bill_no(n), _sent(n, locale)) for n in notices],
        t("没有发过提醒或通知。", locale))
    body += tag("h2", t("家人", locale)) + table(
        (t("关系", locale), t("姓名", locale), t("谁付款", locale)),
        [(t(RELATION[f.relation], locale),
          ("markup", tag("a", relatives.get(other, "?"), href=f"/admin/members/{other}")),
          relatives.get(f.payer_id, "?"))
         for f in family for other in [f.dependent_id if f.payer_id == member_id else f.payer_id]],
        t("没有绑定家人。", locale))
    body += await consent_section(request, member_id, consents, withdraw_marketing_call.roles)
    body += tag("h2", t("操作记录", locale)) + audit_rows(history, locale)
    return await page(request, member.name, body)


def _sent(notice: Outbox, locale: str) -> str:
    if notice.status == "sent" and notice.sent_at is not None:
        return t("已发送 {at}", locale, at=moment(notice.sent_at, locale))
    if notice.status == "dead":
        return t("发送失败", locale) + (f": {notice.last_error}" if notice.last_error else "")
    if notice.status == "dropped":
        return t("未发送：{why}", locale, why=dropped_reason(notice.last_error, locale))
    return t("待发送", locale)


async def _member_actions(request: web.Request, member: Member) -> str:
    forms = [(REVEAL_FIELDS[field], f"/admin/members/{member.id}/reveal", f'<input type="hidden" name="field" value="{field}">')
             for field in REVEAL_FIELDS if request[OPERATOR].role in reveal_number.roles]
    forms += [(label, f"/admin/members/{member.id}/{path}", "")
              for path, (handler, label, statuses) in MEMBER_ACTIONS.items()
              if member.status in statuses and request[OPERATOR].role in handler.roles]
    return await action_forms(request, forms)


def member_action(action, *roles: str):
    """The POST handler of `action(core, operator, member_id, reason)`, for `roles`."""

    @require(*roles)
    async def handler(request: web.Request) -> web.Response:
        member_id = member_id_of(request)
        return await act(request, action(request.app[CORE], request[OPERATOR], member_id, await posted_reason(request)),
                         f"/admin/members/{member_id}")

    return handler


# A no to offers the member gave elsewhere: offered on the page's offers section while they say yes.
withdraw_marketing_call = member_action(withdraw_marketing, "operator")

# path -> (handler, button, the member statuses it is offered for)
MEMBER_ACTIONS = {
    "repair": (member_action(repair, "operator"), N_("信用修复"), ("suspended",)),
    "suspend": (member_action(suspend, "operator"), N_("手动暂停"), ("active",)),
    "restore": (member_action(restore, "operator"), N_("解除手动暂停"), ("suspended",)),
}


@require("operator", "hospital", "community")
async def reveal_number(request: web.Request) -> web.Response:
    """The full number on a page of its own, never in a URL or a cookie; the showing is audited."""
    locale, member_id = page_locale(request), member_id_of(request)
    posted = await request.post()
    field = str(posted.get("field", ""))
    try:
        number = await reveal(request.app[CORE], request[OPERATOR], member_id, field, await posted_reason(request))
    except BillingError as exc:
        return await refused(request, exc)
    label = t("身份证号", locale) if field == "id_number" else t("手机号", locale)
    body = (wrap("dl", wrap("div", tag("dt", label) + tag("dd", number, class_="number")), class_="facts")
            + tag("p", t("这次查看已写入操作记录。", locale), class_="notice")
            + tag("a", t("返回会员页", locale), href=f"/admin/members/{member_id}"))
    return await page(request, t("完整号码", locale), body)


def _notice_kind(notice, locale: str) -> str:
    """A notice's kind in the reader's language; a programme event with its name (advance_requested, ...),
    an SMS with the notice it carries."""
    kind = t(NOTICE_KINDS[notice.kind], locale) if notice.kind in NOTICE_KINDS else notice.kind
    if notice.kind == "sms":
        return f"{kind}：{t(NOTICE_KINDS[notice.payload['notice']], locale)}"
    return f"{kind}：{notice.payload['event']}" if notice.kind == "event" else kind


def _bill_no(notice) -> str:
    """The bill a notice or a programme event is about, or ""."""
    payload = notice.payload.get("data", {}) if notice.kind == "event" else notice.payload
    return str(payload.get("bill_no") or "")
