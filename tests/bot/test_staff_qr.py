"""A community worker's onboarding QR code: the chat sends it as an image message (uploaded
as temporary media), the signed link is a printable poster, WeChat's image of the ticket is a
real QR code of the ticket's URL (the fake draws it with segno), and a bad link is a 404."""
from __future__ import annotations

import re

import segno
from aiohttp.test_utils import unused_port

from billing.staff import add_staff, onboarding_qr_url, onboarding_scene
from bot.app import build_app
from bot.sandbox.fake_wechat_api import QR_BORDER, QR_SCALE, push, read_reply, text_message
from bot.wechat_api import WeChatAccount, WeChatApi
from bot.wechat_webhook import FAKE_WECHAT
from handlers.i18n import t
from qr_png import dark_modules, png_pixels
from wechat_support import CUSTOM, wait_until

STAFF_OPENID = "o-staff-1"


async def start(make_core, aiohttp_client):
    port = unused_port()
    core = await make_core(hospital=None)
    core.public_url = f"http://127.0.0.1:{port}"
    account = WeChatAccount.sandbox(core.public_url)
    api = WeChatApi(core.db, account, clock=core.clock)
    app = build_app(core, background=False, wechat=api)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    staff_id = await add_staff(core, STAFF_OPENID, "社区王老师")
    return core, app, client, account, staff_id


def the_matrix(content: str) -> list[list[bool]]:
    return [[bool(module) for module in row] for row in segno.make_qr(content, error="m").matrix]


async def test_the_chat_sends_the_code_as_an_image_message(make_core, aiohttp_client):
    core, app, client, account, staff_id = await start(make_core, aiohttp_client)
    fake = app[FAKE_WECHAT]
    now = int(core.clock.now().timestamp())
    query, body = push(account, text_message(STAFF_OPENID, "二维码", 1, now), now)
    response = await client.post("/wechat", params=query, data=body)
    first = read_reply(account, await response.read())
    assert first["MsgType"] == "text" and "/qr/staff:" in first["Content"] and "\x1f" not in first["Content"]

    await wait_until(lambda: any(c.body.get("msgtype") == "image" for c in fake.calls_to(CUSTOM)))
    await wait_until(lambda: len(fake.calls_to(CUSTOM)) == 2)  # the image, then the instruction
    image, instruction = [call.body for call in fake.calls_to(CUSTOM)]
    assert image["touser"] == STAFF_OPENID and image["msgtype"] == "image"
    assert "扫一扫" in instruction["text"]["content"]
    (upload,) = fake.calls_to("/cgi-bin/media/upload")
    assert upload.query["type"] == "image"
    kind, png = fake.media[image["image"]["media_id"]]
    (ticket,) = [ticket for ticket, scene in fake.qr_scenes.items() if scene == onboarding_scene(staff_id)]
    assert kind == "image" and dark_modules(png, QR_SCALE, QR_BORDER) == the_matrix(fake.qr_urls[ticket])

    # Asked again: the same permanent code, uploaded afresh (temporary media lives 3 days).
    query, body = push(account, text_message(STAFF_OPENID, "二维码", 2, now + 1), now + 1)
    await client.post("/wechat", params=query, data=body)
    await wait_until(lambda: len(fake.calls_to(CUSTOM)) == 4)
    assert len(fake.qr_scenes) == 1 and len(fake.media) == 2


async def test_showqrcode_draws_a_real_code_of_the_tickets_url(make_core, aiohttp_client):
    core, app, client, account, staff_id = await start(make_core, aiohttp_client)
    link = onboarding_qr_url(core, staff_id).removeprefix(core.public_url)
    response = await client.get(link.replace("?", "/image?"), allow_redirects=False)
    assert response.status == 302 and "/cgi-bin/showqrcode?ticket=" in response.headers["Location"]
    image = await client.get(response.headers["Location"].removeprefix(core.public_url))
    assert image.status == 200 and image.content_type == "image/png"
    png = await image.read()
    (ticket,) = app[FAKE_WECHAT].qr_urls
    url = app[FAKE_WECHAT].qr_urls[ticket]
    assert url.startswith("http://weixin.qq.com/q/")
    pixels = png_pixels(png)
    side = segno.make_qr(url, error="m").symbol_size(scale=QR_SCALE, border=QR_BORDER)
    assert (len(pixels[0]), len(pixels)) == side and 150 <= side[0] <= 600
    assert dark_modules(png, QR_SCALE, QR_BORDER) == the_matrix(url)
    assert dark_modules(png, QR_SCALE, QR_BORDER) != the_matrix(url + "x")
    assert (await client.get("/sandbox/wechat/cgi-bin/showqrcode?ticket=gQunknown")).status == 404


async def test_the_link_is_a_printable_poster_in_the_members_language(make_core, aiohttp_client):
    core, app, client, account, staff_id = await start(make_core, aiohttp_client)
    link = onboarding_qr_url(core, staff_id).removeprefix(core.public_url)
    for lang in ("zh_Hans", "zh_Hant", "en"):
        response = await client.get(f"{link}&lang={lang}")
        assert response.status == 200 and response.content_type == "text/html"
        page = await response.text()
        assert "社区王老师" in page and "<svg" in page and "@media print" in page and "<script" not in page
        assert t("请用微信扫一扫这个二维码，关注后按提示开通。", lang) in page
    assert "Scan this code" in page
    created = app[FAKE_WECHAT].calls_to("/cgi-bin/qrcode/create")
    assert {c.body["action_info"]["scene"]["scene_str"] for c in created} == {onboarding_scene(staff_id)}
    assert {c.body["action_name"] for c in created} == {"QR_LIMIT_STR_SCENE"}
    (url,) = app[FAKE_WECHAT].qr_urls.values()
    svg = re.search(r"<svg.*</svg>", page, re.S).group()
    assert svg == segno.make_qr(url, error="m").svg_inline(scale=8, border=2, dark="#000", light="#fff")

    forged = link.replace(f"staff:{staff_id}", f"staff:{staff_id + 1}")
    not_ascii = (link.split("?")[0] + "?sig=%C2%B2", "/qr/staff:%C2%B2?sig=0", "/qr/%ED%A0%80?sig=0")  # compare_digest: a 500
    before = len(created)
    for bad in (forged, link.split("?")[0], link[:-1] + ("0" if link[-1] != "0" else "1"), *not_ascii):
        for path in (bad, bad.replace("?", "/image?") if "?" in bad else bad + "/image"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 404 and "二维码" in await response.text()
    assert len(app[FAKE_WECHAT].calls_to("/cgi-bin/qrcode/create")) == before  # nothing minted for a bad link
