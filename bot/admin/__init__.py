"""The operator console at /admin/ (DESIGN §4.2): a sub-application with its own session and
guard middlewares, mounted by bot.app. Pages and calls declare their roles with
`bot.admin.guard.require`; pages are drawn in `bot.admin.frame.page`."""
from __future__ import annotations

from aiohttp import web

from bot.admin import bills, history, login, members
from bot.admin.frame import page
from bot.admin.guard import middlewares, require
from bot.admin.session import OPERATOR, page_locale
from bot.hospital_api import CORE
from bot.html import tag, wrap
from handlers.i18n import t

ADMIN = web.AppKey("admin", web.Application)  # the console's sub-application, for more routes to be added


@require("operator", "hospital", "community", "auditor")
async def home(request: web.Request) -> web.Response:
    locale, operator = page_locale(request), request[OPERATOR]
    search = wrap("form", wrap("label", tag("span", t("查找会员或账单", locale)) + '<input name="q" required>')
                  + tag("button", t("查找", locale), type="submit", class_="button"),
                  method="get", action="/admin/members", role="search")
    return await page(request, t("欢迎，{name}", locale, name=operator.username), search)


def console_app(app: web.Application) -> web.Application:
    core = app[CORE]
    admin = web.Application(middlewares=middlewares(core))
    admin[CORE] = core
    admin.router.add_get("/", home)
    admin.router.add_route("*", "/login", login.login)
    admin.router.add_post("/logout", login.logout)
    admin.router.add_get("/members", members.search)
    admin.router.add_get("/members/{member_id}", members.member_page)
    admin.router.add_post("/members/{member_id}/reveal", members.reveal_number)
    for path, (handler, *_) in members.MEMBER_ACTIONS.items():
        admin.router.add_post(f"/members/{{member_id}}/{path}", handler)
    admin.router.add_get("/bills/{bill_no}", bills.bill_page)
    for path, (handler, _) in bills.BILL_ACTIONS.items():
        admin.router.add_post(f"/bills/{{bill_no}}/{path}", handler)
    admin.router.add_post("/refunds/{refund_id}/retry", bills.retry_refund_call)
    admin.router.add_get("/audit", history.audit_log)
    return admin


def setup(app: web.Application) -> None:
    admin = console_app(app)
    app[ADMIN] = admin
    app.add_subapp("/admin/", admin)
    app.router.add_get("/admin", _to_console)


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/admin/")
