"""The console's session: an encrypted cookie (aiohttp-session's EncryptedCookieStorage,
its key derived from the programme's secret with HKDF), HttpOnly, SameSite=Strict, Secure
when the public URL is https, holding the operator's id, when the session started and was
last used (for the idle and absolute expiry, bot.admin.guard), the CSRF token and the language."""
from __future__ import annotations

import secrets
from datetime import timedelta

from aiohttp import web
from aiohttp_session import get_session, new_session
from aiohttp_session.cookie_storage import EncryptedCookieStorage

from billing.core import Core
from billing.operators import SignedIn
from bot.hospital_api import CORE

OPERATOR = web.RequestKey("operator", SignedIn)  # who is signed in, set for every page but the login
LOCALE = web.RequestKey("locale", str)  # the page's language
CSRF_FIELD = "csrf"
COOKIE_NAME = "xinyi_admin"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
LOGIN_PATH = "/admin/login"


def cookie_storage(core: Core) -> EncryptedCookieStorage:
    return EncryptedCookieStorage(core.pii.derive_key(b"admin-session"), cookie_name=COOKIE_NAME, path="/admin",
                                  httponly=True, samesite="Strict", secure=core.public_url.startswith("https://"))


def page_locale(request: web.Request) -> str:
    return request[LOCALE]


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


async def start(request: web.Request, operator: SignedIn) -> None:
    """A new session for this operator: a new cookie and a new CSRF token (no fixation)."""
    session = await new_session(request)
    now = request.app[CORE].clock.now().timestamp()
    session.update(op=operator.id, started=now, seen=now, csrf=secrets.token_urlsafe(32), lang=request[LOCALE])


def local_target(raw: str | None) -> str:
    """Where to go after logging in: a console path, never another site."""
    return raw if raw and raw.startswith("/admin/") and not raw.startswith("//") and "\\" not in raw else "/admin/"
