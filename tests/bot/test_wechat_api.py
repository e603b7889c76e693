"""The async WeChat API client against the fake WeChat API on loopback: the shared token
and its single refresher across workers, the retry on a refused token, template and
customer-service messages, QR codes, the menu and OAuth."""
from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from sqlalchemy import update

from bot.cli import UserError, build_parser, menu_push_command
from bot.config import Settings
from bot.sandbox.fake_wechat_api import FakeWeChat, qr_png
from bot.wechat_api import QR_MAX_EXPIRE_S, WeChatApi, WeChatApiError
from bot.wechat_menu import build_menu
from handlers.router import REGISTRY
from storage.models import WeChatToken
from wechat_support import OPENID, SAMPLE, another_worker_db, on_fake

TOKEN = "/cgi-bin/token"
CUSTOM = "/cgi-bin/message/custom/send"


@pytest.fixture
async def fake_wechat(aiohttp_server):
    fake = FakeWeChat(SAMPLE.appid, SAMPLE.secret, oauth_origin="https://xinyi.example")  # the domain test_oauth_snsapi_base_gives_the_openid_once returns to
    return fake, await aiohttp_server(fake.app())


@pytest.fixture
async def fake(fake_wechat):
    return fake_wechat[0]


@pytest.fixture
async def api_for(db, clock, fake_wechat):
    """`api_for(database)`: a client as one worker process has it (its own cache and session)."""
    made: list[WeChatApi] = []

    def make(database=None) -> WeChatApi:
        made.append(WeChatApi(database or db, on_fake(SAMPLE, fake_wechat[1]), clock=clock))
        return made[-1]

    yield make
    for api in made:
        await api.close()


@pytest.fixture
def api(api_for):
    return api_for()


# -- the access token ------------------------------------------------------------------------


async def test_five_workers_fetch_the_token_once(db, api_for, fake):
    others = [await another_worker_db(db) for _ in range(4)]
    try:
        workers = [api_for()] + [api_for(other) for other in others]
        tokens = await asyncio.gather(*(worker.access_token() for worker in workers for _ in range(3)))
        assert len(set(tokens)) == 1 and len(fake.calls_to(TOKEN)) == 1
        await asyncio.gather(*(worker.send_text(OPENID, "你好") for worker in workers))
        assert len(fake.calls_to(TOKEN)) == 1 and len(fake.calls_to(CUSTOM)) == 5
    finally:
        for other in others:
            await other.close()


@pytest.mark.parametrize("errcode", [40001, 42001])
async def test_a_refused_token_is_refreshed_once_and_the_call_retried(db, api, api_for, fake, errcode):
    other_db = await another_worker_db(db)
    try:
        other = api_for(other_db)
        await api.send_text(OPENID, "一")
        await other.send_text(OPENID, "二")  # both workers now cache the same token
        fake.expire_tokens(errcode)
        await api.send_text(OPENID, "三")
        await other.send_text(OPENID, "四")  # refused too, but finds the new token: no second refresh
        assert len(fake.calls_to(TOKEN)) == 2
        sent = [(call.query["access_token"], call.body["text"]["content"]) for call in fake.calls_to(CUSTOM)]
        assert [text for _, text in sent] == ["一", "二", "三", "三", "四", "四"]
        assert sent[2][0] == sent[4][0] != sent[3][0] == sent[5][0]
    finally:
        await other_db.close()


async def test_a_token_refused_twice_is_an_error(api, fake):
    fake.fail_next(CUSTOM, 40001, times=2)
    with pytest.raises(WeChatApiError) as refused:
        await api.send_text(OPENID, "你好")
    assert refused.value.errcode == 40001 and len(fake.calls_to(TOKEN)) == 2 and len(fake.calls_to(CUSTOM)) == 2


async def test_the_token_is_renewed_five_minutes_before_it_expires(api, fake, clock):
    first = await api.access_token()
    clock.advance(seconds=7200 - 301)
    assert await api.access_token() == first
    clock.advance(seconds=2)
    assert await api.access_token() != first and len(fake.calls_to(TOKEN)) == 2


async def test_a_failed_refresh_frees_the_lease_and_a_dead_refreshers_lease_runs_out(api, api_for, db, fake, clock):
    fake.fail_next(TOKEN, -1)
    with pytest.raises(WeChatApiError):
        await api.access_token()
    assert await api.access_token()  # at once: the lease was released
    async with db.transaction() as session:  # a worker took the lease and died 16 s ago
        await session.execute(update(WeChatToken).values(expires_at=None, refresher="dead-worker",
                                                         refresh_until=clock.now() - timedelta(seconds=1)))
    assert await api_for().access_token() and len(fake.calls_to(TOKEN)) == 3


async def test_wrong_credentials_are_an_error(db, clock, fake_wechat):
    api = WeChatApi(db, dataclasses.replace(on_fake(SAMPLE, fake_wechat[1]), secret="wrong"), clock=clock)
    try:
        with pytest.raises(WeChatApiError) as refused:
            await api.send_text(OPENID, "你好")
        assert refused.value.errcode == 40125 and fake_wechat[0].calls_to(CUSTOM) == []
    finally:
        await api.close()


# -- messages, QR codes, menu, OAuth -----------------------------------------------------------------


async def test_template_and_customer_service_messages_as_wechat_wants_them(api, fake):
    msgid = await api.send_template(OPENID, "tpl-bill", {"first": "您的账单已出", "keyword1": "¥12.30"},
                                    url="https://xinyi.example/pay/abc")
    await api.send_text(OPENID, "您好👋")
    template, custom = fake.calls_to("/cgi-bin/message/template/send")[0], fake.calls_to(CUSTOM)[0]
    assert msgid > 0 and template.body == {
        "touser": OPENID, "template_id": "tpl-bill", "url": "https://xinyi.example/pay/abc",
        "data": {"first": {"value": "您的账单已出"}, "keyword1": {"value": "¥12.30"}},
    }
    assert custom.body == {"touser": OPENID, "msgtype": "text", "text": {"content": "您好👋"}}
    assert "您的账单已出".encode() in template.raw  # UTF-8 as it is, not \u escapes


async def test_a_user_who_refused_our_messages_is_reported_as_unreachable(api, fake):
    fake.refuse(OPENID, 43101)
    with pytest.raises(WeChatApiError) as refused:
        await api.send_template(OPENID, "tpl", {"first": "x"})
    assert refused.value.unreachable


async def test_qr_codes_temporary_and_permanent(api, fake):
    temporary = await api.create_qr("staff:7", expire_seconds=600)
    permanent = await api.create_qr("hospital:H1")
    sent = [call.body for call in fake.calls_to("/cgi-bin/qrcode/create")]
    assert sent == [
        {"action_name": "QR_STR_SCENE", "expire_seconds": 600, "action_info": {"scene": {"scene_str": "staff:7"}}},
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": "hospital:H1"}}},
    ]
    assert (temporary.expire_seconds, permanent.expire_seconds) == (600, None)
    assert fake.qr_scenes[permanent.ticket] == "hospital:H1"
    async with aiohttp.ClientSession() as session, session.get(temporary.image_url) as image:
        assert image.status == 200 and image.content_type == "image/png"


async def test_an_image_message_uploads_temporary_media_and_sends_its_media_id(api, fake):
    await api.send_qr_image(OPENID, "staff:7")
    (upload,) = fake.calls_to("/cgi-bin/media/upload")
    (sent,) = [call.body for call in fake.calls_to(CUSTOM)]
    assert upload.query["type"] == "image" and sent["msgtype"] == "image" and sent["touser"] == OPENID
    kind, png = fake.media[sent["image"]["media_id"]]
    (ticket,) = fake.qr_urls
    assert kind == "image" and png == qr_png(fake.qr_urls[ticket])

    fake.expire_tokens()  # a refused token is refreshed once, for an upload too
    jpeg = b"\xff\xd8\xff\xe0" + bytes(100)
    media_id = await api.upload_image("qr.jpg", jpeg, "image/jpeg")
    assert fake.media[media_id] == ("image", jpeg)
    with pytest.raises(WeChatApiError) as refused:  # WeChat takes images, not any file
        await api.upload_image("qr.png", b"not an image")
    assert refused.value.errcode == 40005
    with pytest.raises(WeChatApiError) as unknown:
        await api.send_image(OPENID, "no-such-media")
    assert unknown.value.errcode == 40007
    with pytest.raises(ValueError):
        await api.upload_image("big.png", b"\x89PNG" + bytes(10 * 1024 * 1024))


@pytest.mark.parametrize("scene, expire_seconds", [("", None), ("x" * 65, None), ("场" * 22, None),
                                                   ("ok", 0), ("ok", QR_MAX_EXPIRE_S + 1)])
async def test_qr_limits_are_checked_before_the_call(api, fake, scene, expire_seconds):
    with pytest.raises(ValueError):
        await api.create_qr(scene, expire_seconds=expire_seconds)
    assert fake.calls == []


async def test_xinyi_menu_push_sends_the_menu_within_wechats_limits(make_core, fake_wechat, capsys):
    fake, server = fake_wechat
    core = await make_core(hospital=None)
    settings = Settings(secret_key="s" * 32, sandbox=False, wechat_appid=SAMPLE.appid, wechat_secret=SAMPLE.secret,
                        wechat_token=SAMPLE.token, wechat_api_base=str(server.make_url("")).rstrip("/"))
    args = build_parser().parse_args(["menu", "push"])
    await menu_push_command(core, settings, args)
    assert fake.menu == build_menu() and "menu pushed to wx5823bf96d3bd56c7" in capsys.readouterr().out
    buttons = fake.menu["button"]
    assert len(buttons) <= 3 and all(1 <= len(b["sub_button"]) <= 5 for b in buttons)
    assert {sub["key"].lower() for b in buttons for sub in b["sub_button"]} <= set(REGISTRY.by_intent)  # the router knows each

    fake.fail_next("/cgi-bin/menu/create", 40018)
    with pytest.raises(UserError, match="40018"):
        await menu_push_command(core, settings, args)


def _click(name: str, key: str = "K") -> dict:
    return {"type": "click", "name": name, "key": key}


@pytest.mark.parametrize("menu", [
    {"button": []},
    {"button": [_click("一"), _click("二"), _click("三"), _click("四")]},
    {"button": [{"name": "多", "sub_button": [_click(str(n)) for n in range(6)]}]},
    {"button": [{"name": "空", "sub_button": []}]},
    {"button": [_click("信用就医服务")]},  # 18 bytes
    {"button": [{"name": "长", "sub_button": [_click("长" * 21)]}]},  # 63 bytes
    {"button": [{"type": "click", "name": "无键"}]},
    {"button": [_click("键", "k" * 129)]},
    {"button": [{"type": "view", "name": "链接", "url": "https://x.example/" + "a" * 1020}]},
    {"button": [{"type": "dance", "name": "跳", "key": "K"}]},
])
async def test_a_menu_beyond_the_limits_is_refused_before_the_call(api, fake, menu):
    with pytest.raises(ValueError):
        await api.create_menu(menu)
    assert fake.calls == []


async def test_oauth_snsapi_base_gives_the_openid_once(api, fake):
    url = api.oauth_url("https://xinyi.example/pay/tok?x=1", state="pay")
    parts = urlsplit(url)
    assert parts.fragment == "wechat_redirect"
    query = parse_qsl(parts.query)
    assert [name for name, _ in query] == ["appid", "redirect_uri", "response_type", "scope", "state"]
    assert dict(query)["scope"] == "snsapi_base"
    async with aiohttp.ClientSession() as session:
        async with session.get(url.split("#")[0] + "&openid=" + OPENID, allow_redirects=False) as page:
            assert page.status == 302
            back = urlsplit(page.headers["Location"])
    returned = dict(parse_qsl(back.query))
    assert back.netloc == "xinyi.example" and returned["x"] == "1" and returned["state"] == "pay"
    assert await api.openid_from_code(returned["code"]) == OPENID
    for code, errcode in [(returned["code"], 40163), ("forged", 40029)]:
        with pytest.raises(WeChatApiError) as refused:
            await api.openid_from_code(code)
        assert refused.value.errcode == errcode
    assert fake.calls_to(TOKEN) == []  # OAuth needs no access_token


async def test_an_answer_that_is_not_wechat_json_is_an_error(db, clock, aiohttp_server):
    async def broken(request):
        return aiohttp.web.Response(status=502, text="bad gateway")

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", broken)
    server = await aiohttp_server(app)
    api = WeChatApi(db, on_fake(SAMPLE, server), clock=clock)
    try:
        with pytest.raises(WeChatApiError) as failed:
            await api.access_token()
        assert failed.value.errcode == -1 and "502" in failed.value.errmsg
    finally:
        await api.close()
