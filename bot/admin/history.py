"""The audit log as the console shows it: `/admin/audit`, and a member's or bill's own rows."""
from __future__ import annotations

import json

from aiohttp import web

from billing.auditlog import PAGE_ROWS, entries
from bot.admin.frame import page, table
from bot.admin.guard import require
from bot.admin.session import page_locale
from bot.hospital_api import CORE
from bot.html import tag
from handlers.i18n import N_, moment, t
from storage.models import AuditEntry

ACTIONS = {"login": N_("登录"), "lockout": N_("账号锁定"), "repair": N_("信用修复"), "suspend": N_("手动暂停"),
           "restore": N_("解除手动暂停"), "write_off": N_("核销"), "dispute": N_("标记异议"), "resolve": N_("异议已解决"),
           "resend_notice": N_("重发账单通知"), "retry_refund": N_("重新退款"),
           "reveal_id_number": N_("查看完整身份证号"), "reveal_phone": N_("查看完整手机号"),
           "marketing_offer": N_("发送优惠信息"), "marketing_withdraw": N_("代会员退订优惠信息")}


def audit_rows(rows: list[AuditEntry], locale: str) -> str:
    return table(
        (t("时间", locale), t("操作人", locale), t("操作", locale), t("对象", locale), t("原因", locale),
         t("之前", locale), t("之后", locale)),
        [(moment(e.at, locale), e.username, t(ACTIONS[e.action], locale) if e.action in ACTIONS else e.action, e.target, e.reason, _state(e.before), _state(e.after)) for e in rows],
        t("还没有操作记录。", locale))


def _state(state: dict | None) -> str:
    return json.dumps(state, ensure_ascii=False, sort_keys=True) if state else ""


@require("operator", "auditor")
async def audit_log(request: web.Request) -> web.Response:
    locale, core = page_locale(request), request.app[CORE]
    before = request.query.get("before", "")
    async with core.db.transaction() as session:
        rows = await entries(session, before_id=int(before) if before.isdigit() and len(before) < 19 else None)
    body = audit_rows(rows, locale)
    if len(rows) == PAGE_ROWS:
        body += tag("a", t("更早的记录", locale), href=f"/admin/audit?before={rows[-1].id}", class_="more")
    return await page(request, t("操作记录", locale), body)
