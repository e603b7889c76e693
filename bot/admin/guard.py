"""Every console request passes here: the language chosen, the CSRF token of every POST
(compared in constant time), the session's idle and absolute expiry on the core's clock, the
operator's account as it is now; and `require(*roles)` for each page and call."""
from __future__ import annotations

import functools
import hmac
from typing import Awaitable, Callable
from urllib.parse import urlencode

from aiohttp import web
from aiohttp_session import get_session, session_middleware

from billing.core import Core
from billing.operators import signed_in
from bot.admin.frame import refusal
from bot.admin.session import (ABSOLUTE, CSRF_FIELD, IDLE, LOCALE, LOGIN_PATH, OPERATOR, cookie_storage,
                               local_target)
from bot.cashier import negotiated_locale
from bot.hospital_api import CORE
from handlers.i18n import LOCALES, t

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def middlewares(core: Core) -> list:
    return [session_middleware(cookie_storage(core)), _guard]


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    core: Core = request.app[CORE]
    session = await get_session(request)
    chosen = request.query.get("lang", "")
    if chosen in LOCALES:
        session["lang"] = chosen
    request[LOCALE] = session.get("lang") or negotiated_locale(request.headers.get("Accept-Language", ""))
    if request.method == "POST":
        try:  # read once here; the handlers get aiohttp's cached form
            sent = (await request.post()).get(CSRF_FIELD)
        except ValueError:  # not UTF-8, or a broken multipart body
            return await refusal(request, 400, t("这个表单无法读取。请刷新页面后再试。", request[LOCALE]))
        if not isinstance(sent, str) or "csrf" not in session or not hmac.compare_digest(sent, session["csrf"]):
            return await refusal(request, 403, t("这个表单已过期或不是从本后台打开的。请刷新页面后再试。", request[LOCALE]))
    if request.path == LOGIN_PATH:
        return await handler(request)
    now = core.clock.now()
    operator_id = session.get("op")
    expired = operator_id is None or (now.timestamp() - session.get("seen", 0) > IDLE.total_seconds()
                                      or now.timestamp() - session.get("started", 0) > ABSOLUTE.total_seconds())
    operator = None
    if not expired:
        try:
            operator = await signed_in(core, operator_id)
        except LookupError:  # the account was disabled or removed
            pass
    if operator is None:
        session.pop("op", None)
        target = request.path_qs if request.method == "GET" else "/admin/"
        query = {"next": local_target(target)} | ({"expired": "1"} if operator_id is not None else {})
        raise web.HTTPSeeOther(f"{LOGIN_PATH}?{urlencode(query)}")
    session["seen"] = now.timestamp()
    request[OPERATOR] = operator
    return await handler(request)


def require(*roles: str) -> Callable[[Handler], Handler]:
    """The roles a page or call is for; anyone else gets 403 and nothing is done."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            if request[OPERATOR].role not in roles:
                return await refusal(request, 403, t("您的账号没有权限做这件事。", request[LOCALE]))
            return await handler(request)

        guarded.roles = roles
        return guarded

    return decorate
