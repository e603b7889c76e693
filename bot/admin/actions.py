"""What every console action shares: a form per action asking for the reason, the call, and
its refusal shown in plain words (nothing was changed) or a redirect back once done."""
from __future__ import annotations

from typing import Any, Awaitable

from aiohttp import web

from billing.errors import BillingError
from bot.admin.frame import form, reason_field, refusal
from bot.admin.session import page_locale
from bot.html import tag, wrap
from handlers.i18n import N_, t

# Refusals of the core by their reason (or the field at fault), in words for the operator.
REFUSALS = {
    "reason": N_("请写明原因：它会写入操作记录。"),
    "overdue_unpaid": N_("还有逾期账单没有付清，不能做信用修复。"),
    "not_manual": N_("只有在后台手动暂停的会员才能手动解除；逾期暂停要靠还款或信用修复解除。"),
    "not_advanced": N_("只有保险机构已先行垫付的账单才能核销。"),
    "not_disputable": N_("只有未付清、还没有异议的账单才能标记异议。"),
    "not_disputed": N_("这张账单没有异议。"),
    "settled": N_("这张账单已经结清，不需要再发通知。"),
    "channel": N_("不能用这个方式发送。"),
    "not_failed": N_("只有退款失败的才能重试。"),
    "marketing_off": N_("本项目的政策不发送优惠信息。"),
    "not_consenting": N_("这位会员没有订阅优惠信息。"),
    "sender": N_("请写明发送方（机构名称），最多 50 个字。"),
    "text_zh_Hans": N_("请写简体中文的内容，最多 300 个字，只能是文字。"),
    "text_zh_Hant": N_("繁体中文的内容最多 300 个字，只能是文字。"),
    "text_en": N_("英文的内容最多 300 个字，只能是文字。"),
}


async def refused(request: web.Request, exc: BillingError) -> web.Response:
    locale = page_locale(request)
    known = REFUSALS.get(exc.details.get("reason")) or REFUSALS.get(exc.details.get("field"))
    if exc.http_status == 404:
        return await refusal(request, 404, t("找不到，或不在您的范围内。", locale))
    text = t(known, locale) if known else t("不能这样做：{why}", locale, why=exc.message)
    return await refusal(request, 409 if exc.http_status == 409 else 400, text)


async def posted_reason(request: web.Request) -> str:
    return str((await request.post()).get("reason", ""))


async def act(request: web.Request, action: Awaitable[Any], back: str) -> web.Response:
    try:
        await action
    except BillingError as exc:
        return await refused(request, exc)
    raise web.HTTPSeeOther(f"{back}?done=1")


async def action_forms(request: web.Request, forms: list[tuple[str, str, str]]) -> str:
    """(button label, path, extra fields) per action, each folded under its name with a reason to give."""
    locale = page_locale(request)
    folded = []
    for label, path, fields in forms:
        folded.append(wrap("details", tag("summary", t(label, locale))
                           + await form(request, path, fields + reason_field(locale), t(label, locale))))
    return wrap("section", "".join(folded), class_="actions") if folded else ""
