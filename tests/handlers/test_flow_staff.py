"""Staff: their onboarding QR code in chat and the residents they enrolled."""
from __future__ import annotations

from billing.staff import add_staff, onboarding_scene, qr_signature
from chatkit import LIU_YANG, ZHANG_WEI, Chat, chat, core  # noqa: F401 (core, chat: fixtures)

from conftest import START
from handlers.engine import image_reply
from handlers.i18n import day


async def test_staff_get_their_qr_code_and_their_residents(core):
    staff_id = await add_staff(core, "o-staff", "社区王姐")
    staff = Chat(core, "o-staff")
    said, image, after = await staff.messages("二维码")
    scene = onboarding_scene(staff_id)
    assert f"/qr/{scene}?sig={qr_signature(core, scene)}&lang=zh_Hans" in said
    assert image_reply(image) == scene and image_reply(said) is None  # the code itself, as an image message
    assert "扫一扫" in after
    assert "您已帮 0 位居民开通" in await staff.say("我的居民")
    for openid, person in (("o-a", ZHANG_WEI), ("o-b", LIU_YANG)):
        resident = Chat(core, openid)
        await resident.event("subscribe", scene)
        await resident.say("同意")
        await resident.say(person[0])
        await resident.say(person[1])
        await resident.say("13800138000")
        await resident.say("同意")
    await Chat(core, "o-c").enrol(("刘桂兰", "110108195203040075"))  # not through the code
    reply = await staff.say("我的居民")
    assert "您已帮 2 位居民开通" in reply and f"· 张伟 {day(START, 'zh_Hans')} 正常" in reply and "刘洋" in reply
    assert "刘桂兰" not in reply
    assert "工作人员" in await staff.say("菜单")


async def test_only_staff_see_staff_features(chat):
    assert "只给工作人员用" in await chat.say("二维码")
    assert "只给工作人员用" in await chat.say("我的居民")
    assert "工作人员" not in await chat.say("菜单")


async def test_a_scene_that_names_no_staff_id_is_an_ordinary_follow(core):
    for n, scene in enumerate(("staff:" + "9" * 5000, "staff:" + "9" * 30, "staff:²", "staff:", "staff:-1")):
        replies = await Chat(core, f"o-{n}").event("subscribe", scene)
        assert "欢迎关注信医" in replies[0], scene[:20]
