"""Partners' offers in the console (billing/marketing.py): how many members take them now, the
offers sent and where their messages are, and, for an operator, a new offer with its reason. A
member's page shows their yes and no (`consent_section`)."""
from __future__ import annotations

from aiohttp import web

from billing.console import send_offer
from billing.marketing import OFFER_LOCALES, SENDER_MAX_CHARS, TEXT_MAX_CHARS, consenting_count, recent_offers
from bot.admin.actions import act, posted_reason
from bot.admin.frame import form, page, reason_field, table
from bot.admin.guard import require
from bot.admin.session import OPERATOR, page_locale
from bot.hospital_api import CORE
from bot.html import LANGUAGE_NAMES, tag, wrap
from handlers.i18n import N_, moment, t
from storage.models import MarketingConsent

LISTED = 20  # offers on the page
WAYS = {"chat": N_("会员在聊天中"), "console": N_("后台代为记录"), "unfollow": N_("取消关注公众号")}
# Why a message of an offer was not sent (billing/marketing.py, bot/wechat_sender.py).
DROPPED = {"consent_withdrawn": N_("会员已退订"), "marketing_off": N_("本项目已停发优惠信息"),
           "wechat_unreachable": N_("微信无法送达"), "out_of_window": N_("会员 48 小时内没有发过消息，微信不让发")}


def dropped_reason(reason: str | None, locale: str) -> str:
    return t(DROPPED[reason], locale) if reason in DROPPED else (reason or "")


@require("operator", "auditor")
async def offers_page(request: web.Request) -> web.Response:
    core, locale = request.app[CORE], page_locale(request)
    async with core.db.transaction() as session:
        count = await session.run_sync(consenting_count)
        sent = await session.run_sync(recent_offers, LISTED)
    body = tag("p", t("只发给自己回复了“订阅”、现在也没有退订的会员，每条都在发出前再查一次；只通过微信发，不发短信。"
                      "现在订阅的会员：{count} 人。", locale, count=count))
    if not core.policy.marketing_allowed:
        body += tag("p", t("本项目的政策不发送优惠信息（[marketing] allowed = false）。", locale), class_="notice")
    elif request[OPERATOR].role in send_offer_call.roles:
        body += await _offer_form(request)
    body += tag("h2", t("发过的优惠信息", locale)) + table(
        (t("时间", locale), t("操作人", locale), t("发送方", locale), t("内容", locale), t("发给", locale),
         t("已发送", locale), t("未发送", locale), t("待发送", locale)),
        [(moment(s.offer.created_at, locale), s.username, s.offer.sender, s.offer.texts["zh_Hans"], str(s.offer.recipients),
          str(s.statuses.get("sent", 0)), str(s.statuses.get("dropped", 0) + s.statuses.get("dead", 0)),
          str(s.statuses.get("pending", 0))) for s in sent],
        t("还没有发过优惠信息。", locale))
    return await page(request, t("优惠信息", locale), body)


async def _offer_form(request: web.Request) -> str:
    locale = page_locale(request)
    names = dict(LANGUAGE_NAMES)
    fields = wrap("label", tag("span", t("发送方（机构名称）", locale))
                  + f'<input name="sender" required maxlength="{SENDER_MAX_CHARS}">')
    for code in OFFER_LOCALES:
        label = t("内容：{language}", locale, language=names[code]) + ("" if code == "zh_Hans" else t("（可不填）", locale))
        required = " required" if code == "zh_Hans" else ""
        fields += wrap("label", tag("span", label)
                       + f'<textarea name="text_{code}"{required} maxlength="{TEXT_MAX_CHARS}" rows="3"></textarea>')
    fields += tag("p", t("每条最后会自动加上“回复 退订 不再接收”。", locale))
    return (tag("h2", t("发一条优惠信息", locale))
            + await form(request, "/admin/marketing", fields + reason_field(locale), t("发给订阅的会员", locale)))


@require("operator")
async def send_offer_call(request: web.Request) -> web.Response:
    posted = await request.post()
    texts = {code: str(posted.get(f"text_{code}", "")) for code in OFFER_LOCALES}
    return await act(request, send_offer(request.app[CORE], request[OPERATOR], str(posted.get("sender", "")), texts,
                                         await posted_reason(request)), "/admin/marketing")


async def consent_section(request: web.Request, member_id: int, rows: list[tuple[MarketingConsent, str | None]],
                          withdraw_roles: tuple[str, ...]) -> str:
    """A member's answer to offers now and every yes and no before (row, the operator's name),
    newest first; the form that records a no they gave elsewhere, for `withdraw_roles`."""
    locale = page_locale(request)
    latest = rows[0][0] if rows else None
    now = (t("已订阅（{since} 起）", locale, since=moment(latest.at, locale)) if latest is not None and latest.granted
           else t("未订阅", locale))
    body = tag("h2", t("优惠信息（营销）", locale)) + tag("p", t("现在：{state}", locale, state=now))
    if latest is not None and latest.granted and request[OPERATOR].role in withdraw_roles:
        body += wrap("section", wrap("details", tag("summary", t("代会员退订", locale)) + await form(
            request, f"/admin/members/{member_id}/marketing-withdraw", reason_field(locale), t("代会员退订", locale))),
            class_="actions")
    return body + table(
        (t("时间", locale), t("选择", locale), t("方式", locale), t("操作人", locale)),
        [(moment(row.at, locale), t("订阅", locale) if row.granted else t("退订", locale), t(WAYS[row.via], locale),
          username or "") for row, username in rows],
        t("没有订阅或退订过。", locale))
