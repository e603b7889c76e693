"""The console's page frame: navigation, who is signed in, the language switch, and forms
that carry the CSRF token. Plain HTML that works without JavaScript, readable at phone width.
`t()` is never called inside an f-string, where pybabel would not find the message."""
from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from bot.admin.session import CSRF_FIELD, OPERATOR, csrf_token, page_locale
from bot.html import HTML_LANG, LANGUAGE_NAMES, tag, wrap
from handlers.i18n import N_, t

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; script-src 'self'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}
ROLE_NAMES = {"operator": N_("项目运营"), "hospital": N_("医院"), "community": N_("社区"), "auditor": N_("审计")}
# (path, label, roles that see the link)
NAVIGATION = (
    ("/admin/", N_("首页"), ("operator", "hospital", "community", "auditor")),
    ("/admin/members", N_("会员"), ("operator", "hospital", "community", "auditor")),
    ("/admin/bills", N_("账单"), ("operator", "hospital", "community", "auditor")),
    ("/admin/exports/", N_("导出"), ("operator", "hospital", "community", "auditor")),
    ("/admin/marketing", N_("优惠信息"), ("operator", "auditor")),
    ("/admin/audit", N_("操作记录"), ("operator", "auditor")),
)


def html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS)


async def page(request: web.Request, title: str, body: str, *, status: int = 200) -> web.Response:
    """A console page: `body` is markup made with bot.html's `tag` and `wrap`."""
    locale = page_locale(request)
    operator = request.get(OPERATOR)
    header = tag("p", t("信医运营后台", locale), class_="brand")
    if operator is not None:
        links = "".join(tag("a", t(label, locale), href=path, aria_current="page" if request.path == path else None)
                        for path, label, roles in NAVIGATION if operator.role in roles)
        who = tag("span", f"{operator.username} · {t(ROLE_NAMES[operator.role], locale)}", class_="who")
        logout = await form(request, "/admin/logout", "", t("退出登录", locale), button_class="link")
        header += wrap("nav", links, aria_label=t("导航", locale)) + wrap("div", who + logout, class_="account")
    languages = "".join(tag("a", name, href=f"{request.path}?{urlencode({**request.query, 'lang': code})}", lang=HTML_LANG[code],
                            aria_current="true" if code == locale else None)
                        for code, name in LANGUAGE_NAMES)
    header += wrap("div", languages, class_="languages")
    if request.query.get("done"):
        body = tag("p", t("已完成，已写入操作记录。", locale), class_="notice", role="status") + body
    return html(
        f'<!doctype html><html lang="{HTML_LANG[locale]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{tag("title", title + " · " + t("信医运营后台", locale))}<link rel="stylesheet" href="/static/admin.css"></head>'
        f'<body>{wrap("header", header)}{wrap("main", tag("h1", title) + body)}</body></html>',
        status,
    )


async def form(request: web.Request, action: str, fields: str, button: str, *, button_class: str = "button") -> str:
    """A POST form to `action` holding `fields` (markup) and the session's CSRF token."""
    token = await csrf_token(request)
    return wrap("form", f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">' + fields
                + tag("button", button, type="submit", class_=button_class), method="post", action=action)


def reason_field(locale: str) -> str:
    """The required reason every action asks for; it goes into the audit log."""
    return wrap("label", tag("span", t("原因（写入操作记录）", locale))
                + '<textarea name="reason" required maxlength="500" rows="2"></textarea>')


async def refusal(request: web.Request, status: int, text: str) -> web.Response:
    locale = page_locale(request)
    titles = {403: t("没有权限", locale), 404: t("找不到", locale)}
    return await page(request, titles.get(status, t("不能这样做", locale)), tag("p", text, class_="error", role="alert"),
                      status=status)


def table(headers: tuple[str, ...], rows: list[tuple[str, ...]], empty: str) -> str:
    """A table of text cells (escaped); a cell given as ("markup", m) is markup made with `tag`/`wrap`."""
    if not rows:
        return tag("p", empty, class_="empty")
    head = wrap("tr", "".join(tag("th", h, scope="col") for h in headers))
    body = "".join(wrap("tr", "".join(wrap("td", c[1]) if isinstance(c, tuple) else tag("td", c) for c in row))
                   for row in rows)
    return wrap("div", wrap("table", wrap("thead", head) + wrap("tbody", body)), class_="scroll")
