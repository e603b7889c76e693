"""The operator console at /admin/ (DESIGN §4.2): a sub-application with its own session and
guard middlewares, mounted by bot.app. Pages and calls declare their roles with
`bot.admin.guard.require`; pages are drawn in `bot.admin.frame.page`."""
from __future__ import annotations

from aiohttp import web

from billing.clock import CHINA_TIME
from billing.errors import InvalidInput, NotFound
from billing.exports import Scope as ExportScope
from billing.hospitals import hospital_code
from billing.reports import hospitals_to_choose, programme_figures
from bot import exports_http
from bot.admin import bills, history, login, marketing, members
from bot.admin.dashboard import render_dashboard, scope_from_query
from bot.admin.frame import page, refusal
from bot.admin.guard import middlewares, require
from bot.admin.session import CSRF_FIELD, OPERATOR, csrf_token, page_locale
from bot.hospital_api import CORE
from bot.html import tag, wrap
from handlers.i18n import t

ADMIN = web.AppKey("admin", web.Application)  # the console's sub-application, for more routes to be added


@require("operator", "hospital", "community", "auditor")
async def home(request: web.Request) -> web.Response:
    """The search box, then the programme's figures for the signed-in operator's scope: a hospital's
    staff see their own hospital, a community office its own staff's residents."""
    core, locale, operator = request.app[CORE], page_locale(request), request[OPERATOR]
    search = wrap("form", wrap("label", tag("span", t("查找会员或账单", locale)) + '<input name="q" required>')
                  + tag("button", t("查找", locale), type="submit", class_="button"),
                  method="get", action="/admin/members", role="search")
    scope = operator.scope
    narrowed = ({"hospital": await hospital_code(core, scope.hospital_id)} if scope.role == "hospital"
                else {"staff_ids": scope.staff_ids} if scope.role == "community" else {})
    today = core.clock.now().astimezone(CHINA_TIME).date()
    try:
        figures = await programme_figures(core, scope_from_query(request.query, today, **narrowed))
    except (InvalidInput, NotFound) as error:
        return await refusal(request, 400, error.message)
    dashboard = render_dashboard(figures, await hospitals_to_choose(core), locale, hospital_fixed=scope.role == "hospital")
    return await page(request, t("欢迎，{name}", locale, name=operator.username), search + dashboard)


async def export_viewer(request: web.Request) -> exports_http.Viewer:
    """Who exports, within what: every role, signed in (the guard saw to it): a hospital's staff
    its own bills, a community office its own staff's residents; an auditor too (it changes nothing)."""
    core, operator = request.app[CORE], request[OPERATOR]
    scope = operator.scope
    limits = (ExportScope(hospital=await hospital_code(core, scope.hospital_id)) if scope.role == "hospital"
              else ExportScope(staff_ids=scope.staff_ids) if scope.role == "community" else ExportScope())
    return exports_http.Viewer(limits, page_locale(request), operator.username, {CSRF_FIELD: await csrf_token(request)})


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
    admin.router.add_post("/members/{member_id}/marketing-withdraw", members.withdraw_marketing_call)
    for path, (handler, *_) in members.MEMBER_ACTIONS.items():
        admin.router.add_post(f"/members/{{member_id}}/{path}", handler)
    admin.router.add_get("/bills", bills.bill_list)
    admin.router.add_get("/bills/{bill_no}", bills.bill_page)
    for path, (handler, _) in bills.BILL_ACTIONS.items():
        admin.router.add_post(f"/bills/{{bill_no}}/{path}", handler)
    admin.router.add_post("/refunds/{refund_id}/retry", bills.retry_refund_call)
    admin.router.add_get("/audit", history.audit_log)
    admin.router.add_get("/marketing", marketing.offers_page)
    admin.router.add_post("/marketing", marketing.send_offer_call)
    exports_http.setup(admin, export_viewer, "/exports", at="/admin")
    return admin


def setup(app: web.Application) -> None:
    admin = console_app(app)
    app[ADMIN] = admin
    app.add_subapp("/admin/", admin)
    app.router.add_get("/admin", _to_console)


async def _to_console(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/admin/")
