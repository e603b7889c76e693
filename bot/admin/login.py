"""`/admin/login` (GET the form, POST `username` and `password`) and `/admin/logout` (POST)."""
from __future__ import annotations

from aiohttp import web
from aiohttp_session import get_session

from billing.operators import LockedOut, WrongCredentials, log_in
from bot.admin.frame import form, page
from bot.admin.guard import require
from bot.admin.session import LOGIN_PATH, local_target, page_locale, start
from bot.hospital_api import CORE
from bot.html import tag, wrap
from handlers.i18n import moment, t


async def login_form(request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
    locale = page_locale(request)
    notice = ""
    if error:
        notice = tag("p", error, class_="error", role="alert")
    elif request.query.get("expired"):
        notice = tag("p", t("您太久没有操作，已自动退出。请重新登录。", locale), class_="notice", role="status")
    fields = (wrap("label", tag("span", t("用户名", locale)) + '<input name="username" autocomplete="username" required>')
              + wrap("label", tag("span", t("密码", locale))
                     + '<input name="password" type="password" autocomplete="current-password" required>')
              + f'<input type="hidden" name="next" value="{local_target(request.query.get("next"))}">')
    return await page(request, t("登录", locale), notice + await form(request, LOGIN_PATH, fields, t("登录", locale)),
                      status=status)


async def login(request: web.Request) -> web.Response:
    if request.method == "GET":
        return await login_form(request)
    locale, posted = page_locale(request), await request.post()
    username, password = str(posted.get("username", "")), str(posted.get("password", ""))
    try:
        operator = await log_in(request.app[CORE], username, password)
    except LockedOut as locked:
        text = t("密码错误次数太多，这个账号已锁定到 {until}。请到时再试，或请项目运营人员帮您重设密码。", locale,
                 until=moment(locked.until, locale))
        return await login_form(request, error=text, status=429)
    except WrongCredentials:
        return await login_form(request, error=t("用户名或密码不对，请再试一次。", locale), status=401)
    await start(request, operator)
    raise web.HTTPSeeOther(local_target(str(posted.get("next", ""))))


@require("operator", "hospital", "community", "auditor")
async def logout(request: web.Request) -> web.Response:
    (await get_session(request)).invalidate()
    raise web.HTTPSeeOther(LOGIN_PATH)
