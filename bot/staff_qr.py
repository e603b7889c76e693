"""`/qr/{scene}`: a community worker's onboarding QR code, from the link the chat gives them.

The link carries a signature of the scene, so nobody can mint codes that attribute
enrolments to a staff member; the image itself is WeChat's (showqrcode).
"""
from __future__ import annotations

import hmac

from aiohttp import web

from billing.staff import qr_signature, staff_for_scene
from billing.validate import printable_ascii
from bot.hospital_api import CORE
from bot.wechat_webhook import WECHAT_API
from handlers.i18n import t


def setup(app: web.Application) -> None:
    app.router.add_get("/qr/{scene}", staff_qr)


async def staff_qr(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    scene, sig = request.match_info["scene"], request.query.get("sig", "")
    # A scene_str is 1 to 64 characters; both ASCII, or compare_digest and the HMAC cannot take them.
    signed = printable_ascii(scene, 64) and printable_ascii(sig, 64) and hmac.compare_digest(sig, qr_signature(core, scene))
    if not signed or await staff_for_scene(core, scene) is None:
        raise web.HTTPNotFound(text=t("这个二维码链接无效。请在聊天里回复“二维码”重新获取。", request.query.get("lang", "zh_Hans")))
    # A permanent code: a staff member prints it once, and WeChat gives the same ticket for the same scene.
    qr = await request.app[WECHAT_API].create_qr(scene)
    raise web.HTTPFound(qr.image_url)
