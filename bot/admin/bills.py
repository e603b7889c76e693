"""A bill in the console: its items' totals, payments and refunds, its audit rows, and what may
be done to it: write off (after the insurer's advance), resend its notice, mark it disputed and
resolve it, retry a failed refund. Another hospital's bill is "not found", never shown."""
from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.orm import aliased

from billing.auditlog import entries
from billing.console import (RESEND_CHANNELS, bill_filter, dispute, resend_notice, resolve, retry_refund,
                             scoped_bill, write_off)
from billing.errors import BillingError
from billing.interest import owed
from billing.ladder import UNPAID
from bot.admin.actions import act, action_forms, posted_reason, refused
from bot.admin.frame import page, table
from bot.admin.guard import require
from bot.admin.history import audit_rows
from bot.admin.session import OPERATOR, page_locale
from bot.hospital_api import CORE
from bot.html import tag, wrap
from handlers.flows.bills import BILL_STATUS
from handlers.i18n import N_, daily_interest, institution_name, moment, money, payment_channel, t
from storage.models import Bill, Hospital, Member, Payment, Refund, Visit

ALL = ("operator", "hospital", "community", "auditor")
LISTED = 50  # bills a page
CHANNEL_NAMES = {"wechat": N_("微信"), "sms": N_("短信")}
REFUND_STATUS = {"pending": N_("处理中"), "done": N_("已退回"), "failed": N_("失败")}


@require(*ALL)
async def bill_list(request: web.Request) -> web.Response:
    """The bills in the account's scope (a hospital's own, a community's residents'), newest
    first, LISTED a page, by stage: what a finance office works through."""
    core, operator, locale = request.app[CORE], request[OPERATOR], page_locale(request)
    stage = request.query.get("status", "")
    before = request.query.get("before", "")
    visit, payer = aliased(Visit), aliased(Member)  # the scope's filter correlates on Bill alone
    query = (select(Bill.id, Bill.bill_no, Bill.status, Bill.self_pay_fen, Bill.paid_fen, Bill.issued_at, Bill.due_at,
                    Bill.disputed_at, Bill.payer_id, Hospital.name, payer.name)
             .join(visit, visit.id == Bill.visit_id).join(Hospital, Hospital.id == visit.hospital_id)
             .join(payer, payer.id == Bill.payer_id).where(bill_filter(operator.scope)))
    if stage in BILL_STATUS:
        query = query.where(Bill.status == stage)
    if before.isascii() and before.isdigit() and len(before) < 19:  # else the first page
        query = query.where(Bill.id < int(before))
    async with core.db.transaction() as session:
        rows = (await session.execute(query.order_by(Bill.id.desc()).limit(LISTED + 1))).all()
    shown = rows[:LISTED]
    stages = [("", t("全部", locale))] + [(code, t(name, locale)) for code, name in BILL_STATUS.items()]
    choose = "".join(tag("option", name, value=code, selected=True if code == stage else None) for code, name in stages)
    filter_form = wrap("form", wrap("label", tag("span", t("状态", locale)) + f'<select name="status">{choose}</select>')
                       + tag("button", t("筛选", locale), type="submit", class_="button"), method="get", action="/admin/bills")
    listing = table(
        (t("账单号", locale), t("医院", locale), t("付款人", locale), t("开单", locale), t("到期", locale), t("自付", locale),
         t("已付", locale), t("状态", locale)),
        [(("markup", tag("a", r.bill_no, href=f"/admin/bills/{r.bill_no}")), r[9],
          ("markup", tag("a", r[10], href=f"/admin/members/{r.payer_id}")), moment(r.issued_at, locale),
          moment(r.due_at, locale), money(r.self_pay_fen, locale), money(r.paid_fen, locale),
          t(BILL_STATUS[r.status], locale) + (" · " + t("有异议", locale) if r.disputed_at else "")) for r in shown],
        t("没有账单。", locale))
    more = (tag("a", t("更早的账单", locale), href="/admin/bills?" + urlencode(
        {**({"status": stage} if stage in BILL_STATUS else {}), "before": shown[-1].id}), rel="next")
            if len(rows) > LISTED else "")
    return await page(request, t("账单", locale), filter_form + listing + more)


@require(*ALL)
async def bill_page(request: web.Request) -> web.Response:
    core, operator, locale = request.app[CORE], request[OPERATOR], page_locale(request)
    bill_no = request.match_info["bill_no"]
    async with core.db.transaction() as session:
        try:
            bill = await session.run_sync(scoped_bill, operator.scope, bill_no)
        except BillingError as exc:
            return await refused(request, exc)
        hospital, department, payer = (await session.execute(
            select(Hospital.name, Visit.department, Member.name).join(Hospital, Hospital.id == Visit.hospital_id)
            .join(Member, Member.id == bill.payer_id).where(Visit.id == bill.visit_id))).one()
        payments = list(await session.scalars(select(Payment).where(Payment.bill_id == bill.id).order_by(Payment.id)))
        refunds = list(await session.scalars(select(Refund).where(Refund.bill_id == bill.id).order_by(Refund.id)))
        history = await entries(session, targets=[f"bill:{bill_no}"])
    status = t(BILL_STATUS[bill.status], locale) + (" · " + t("有异议", locale) if bill.disputed_at else "")
    facts = ((t("医院", locale), f"{hospital} · {department}"), (t("付款人", locale), payer), (t("状态", locale), status),
             (t("自付", locale), money(bill.self_pay_fen, locale)), (t("已付", locale), money(bill.paid_fen, locale)),
             (t("开单", locale), moment(bill.issued_at, locale)), (t("到期", locale), moment(bill.due_at, locale)))
    if bill.institution is not None or bill.interest_fen:  # issued under an institution's terms
        now_owed = owed(bill, core.clock.now())
        facts += ((t("金融机构", locale), institution_name(core.policy.institution(bill.institution), bill.institution, locale)
                   + " · " + daily_interest(bill.daily_interest_ppm, locale)),
                  (t("利息", locale), t("{interest}，已付 {paid}", locale, interest=money(now_owed.interest_fen, locale),
                                        paid=money(now_owed.interest_paid_fen, locale))),
                  (t("还欠", locale), money(now_owed.total_fen if bill.status in UNPAID else 0, locale)))
    body = wrap("dl", "".join(wrap("div", tag("dt", k) + tag("dd", v)) for k, v in facts), class_="facts")
    body += tag("a", t("付款人的会员页", locale), href=f"/admin/members/{bill.payer_id}")
    body += await _bill_actions(request, bill)
    body += tag("h2", t("付款", locale)) + table(
        (t("时间", locale), t("方式", locale), t("金额", locale), t("计入账单", locale), t("单号", locale)),
        [(moment(p.created_at, locale), payment_channel(p.channel, locale), money(p.amount_fen, locale), money(p.applied_fen, locale),
          p.gateway_txn_id or p.payment_no) for p in payments], t("还没有付款。", locale))
    body += tag("h2", t("退款", locale)) + table(
        (t("时间", locale), t("金额", locale), t("状态", locale), ""),
        [(moment(r.created_at, locale), money(r.amount_fen, locale), t(REFUND_STATUS[r.status], locale),
          ("markup", await _retry_form(request, r))) for r in refunds], t("没有退款。", locale))
    body += tag("h2", t("操作记录", locale)) + audit_rows(history, locale)
    return await page(request, t("账单 {bill_no}", locale, bill_no=bill.bill_no), body)


async def _bill_actions(request: web.Request, bill: Bill) -> str:
    role, base = request[OPERATOR].role, f"/admin/bills/{bill.bill_no}"
    offered = {
        "write-off": bill.status == "advanced",
        "resend": bill.status in UNPAID,
        "dispute": bill.status in UNPAID and bill.disputed_at is None,
        "resolve": bill.disputed_at is not None,
    }
    locale = page_locale(request)
    options = "".join(tag("option", t(CHANNEL_NAMES[c], locale), value=c) for c in RESEND_CHANNELS)
    channels = wrap("label", tag("span", t("发送方式", locale)) + f'<select name="channel">{options}</select>')
    return await action_forms(request, [(label, f"{base}/{path}", channels if path == "resend" else "")
                                        for path, (handler, label) in BILL_ACTIONS.items()
                                        if offered[path] and role in handler.roles])


async def _retry_form(request: web.Request, refund: Refund) -> str:
    if refund.status != "failed" or request[OPERATOR].role not in retry_refund_call.roles:
        return ""
    return await action_forms(request, [(N_("重新退款"), f"/admin/refunds/{refund.id}/retry", "")])


def bill_action(action, *roles: str):
    """The POST handler of `action(core, operator, bill_no, reason)`, for `roles`."""

    @require(*roles)
    async def handler(request: web.Request) -> web.Response:
        bill_no = request.match_info["bill_no"]
        return await act(request, action(request.app[CORE], request[OPERATOR], bill_no, await posted_reason(request)),
                         f"/admin/bills/{bill_no}")

    return handler


@require("operator", "hospital")
async def resend_bill_notice(request: web.Request) -> web.Response:
    bill_no, posted = request.match_info["bill_no"], await request.post()
    return await act(request, resend_notice(request.app[CORE], request[OPERATOR], bill_no, str(posted.get("channel", "")),
                                            await posted_reason(request)), f"/admin/bills/{bill_no}")


@require("operator", "hospital")
async def retry_refund_call(request: web.Request) -> web.Response:
    raw = request.match_info["refund_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise web.HTTPNotFound()
    core, reason = request.app[CORE], await posted_reason(request)
    async with core.db.transaction() as session:
        bill_no = await session.scalar(select(Bill.bill_no).join(Refund, Refund.bill_id == Bill.id).where(Refund.id == int(raw)))
    return await act(request, retry_refund(core, request[OPERATOR], int(raw), reason), f"/admin/bills/{bill_no}")


# path -> (handler, button)
BILL_ACTIONS = {
    "write-off": (bill_action(write_off, "operator"), N_("核销（保险已垫付）")),
    "resend": (resend_bill_notice, N_("重发账单通知")),
    "dispute": (bill_action(dispute, "operator", "hospital"), N_("标记异议")),
    "resolve": (bill_action(resolve, "operator", "hospital"), N_("异议已解决")),
}
