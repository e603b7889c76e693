"""A community worker's QR link: a valid signature gets WeChat's QR image, anything else a 404."""
from __future__ import annotations

from aiohttp.test_utils import unused_port

from billing.staff import add_staff, onboarding_qr_url, onboarding_scene
from bot.app import build_app
from bot.wechat_api import WeChatAccount, WeChatApi
from bot.wechat_webhook import FAKE_WECHAT


async def test_the_signed_link_redirects_to_the_permanent_qr_code(make_core, aiohttp_client):
    port = unused_port()
    core = await make_core(hospital=None)
    core.public_url = f"http://127.0.0.1:{port}"
    api = WeChatApi(core.db, WeChatAccount.sandbox(core.public_url), clock=core.clock)
    app = build_app(core, background=False, wechat=api)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    staff_id = await add_staff(core, "o-staff-1", "社区王老师")
    link = onboarding_qr_url(core, staff_id).removeprefix(core.public_url)

    response = await client.get(link, allow_redirects=False)
    assert response.status == 302 and "/cgi-bin/showqrcode?ticket=" in response.headers["Location"]
    created = app[FAKE_WECHAT].calls_to("/cgi-bin/qrcode/create")
    assert [c.body["action_info"]["scene"]["scene_str"] for c in created] == [onboarding_scene(staff_id)]
    assert created[0].body["action_name"] == "QR_LIMIT_STR_SCENE"

    forged = link.replace(f"staff:{staff_id}", f"staff:{staff_id + 1}")
    not_ascii = (link.split("?")[0] + "?sig=%C2%B2", "/qr/staff:%C2%B2?sig=0", "/qr/%ED%A0%80?sig=0")  # compare_digest: a 500
    for bad in (forged, link.split("?")[0], link[:-1] + ("0" if link[-1] != "0" else "1"), *not_ascii):
        response = await client.get(bad, allow_redirects=False)
        assert response.status == 404 and "二维码" in await response.text()
    assert len(app[FAKE_WECHAT].calls_to("/cgi-bin/qrcode/create")) == 1  # nothing minted for a bad link
