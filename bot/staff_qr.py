"""A community worker's onboarding QR code, from the link the chat gives them (the chat
sends the code itself as an image message too, see WeChatApi.send_qr_image):

- `/qr/{scene}`: a printable poster, the QR code drawn here as inline SVG (segno) from the
  URL WeChat issued for the scene's ticket, the staff member's name and what to do, in
  the language of `lang`;
- `/qr/{scene}/image`: WeChat's own image of the code (showqrcode).

The link carries a signature of the scene, so nobody can mint codes that attribute
enrolments to a staff member.
"""
from __future__ import annotations

import hmac

import segno
from aiohttp import web

from billing.staff import qr_signature, staff_for_scene
from billing.validate import printable_ascii
from bot.html import HTML_LANG, tag, wrap
from bot.hospital_api import CORE
from bot.wechat_webhook import WECHAT_API
from handlers.i18n import LOCALES, SOURCE_LOCALE, t
from storage.models import Staff

POSTER_CSS = """
body { font-family: sans-serif; margin: 0; color: #000; background: #fff; }
main { max-width: 36rem; margin: 0 auto; padding: 2rem 1rem; text-align: center; }
h1 { font-size: 2.2rem; margin: 0 0 1rem; }
.qr svg { width: 80%; max-width: 22rem; height: auto; }
.who { font-size: 1.6rem; margin: 1rem 0 .5rem; }
.how { font-size: 1.4rem; line-height: 1.6; }
@media print {
  @page { size: A4 portrait; margin: 15mm; }
  main { padding: 0; }
}
"""
# The page is whole in itself: no script, its one style sheet inline.
POSTER_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
                  "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def setup(app: web.Application) -> None:
    app.router.add_get("/qr/{scene}", poster)
    app.router.add_get("/qr/{scene}/image", staff_qr)


def _locale(request: web.Request) -> str:
    lang = request.query.get("lang", SOURCE_LOCALE)
    return lang if lang in LOCALES else SOURCE_LOCALE


async def _signed_staff(request: web.Request) -> Staff:
    core = request.app[CORE]
    scene, sig = request.match_info["scene"], request.query.get("sig", "")
    # A scene_str is 1 to 64 characters; both ASCII, or compare_digest and the HMAC cannot take them.
    signed = printable_ascii(scene, 64) and printable_ascii(sig, 64) and hmac.compare_digest(sig, qr_signature(core, scene))
    staff = await staff_for_scene(core, scene) if signed else None
    if staff is None:
        raise web.HTTPNotFound(text=t("这个二维码链接无效。请在聊天里回复“二维码”重新获取。", _locale(request)))
    return staff


async def staff_qr(request: web.Request) -> web.StreamResponse:
    await _signed_staff(request)
    # A permanent code: a staff member prints it once, and WeChat gives the same ticket for the same scene.
    qr = await request.app[WECHAT_API].create_qr(request.match_info["scene"])
    raise web.HTTPFound(qr.image_url)


async def poster(request: web.Request) -> web.Response:
    staff = await _signed_staff(request)
    locale = _locale(request)
    qr = await request.app[WECHAT_API].create_qr(request.match_info["scene"])
    svg = segno.make_qr(qr.url, error="m").svg_inline(scale=8, border=2, dark="#000", light="#fff")
    title = t("信医 先看病 后付费", locale)
    body = (
        tag("h1", title)
        + wrap("div", svg, class_="qr")
        + tag("p", t("开通人：{name}", locale, name=staff.name), class_="who")
        + tag("p", t("请用微信扫一扫这个二维码，关注后按提示开通。", locale), class_="how")
    )
    html = (
        f'<!doctype html><html lang="{HTML_LANG[locale]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{tag("title", title)}<style>{POSTER_CSS}</style></head><body>{wrap("main", body)}</body></html>'
    )
    return web.Response(text=html, content_type="text/html", headers=POSTER_HEADERS)
