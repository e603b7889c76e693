"""The official account's custom menu, as data, and `xinyi menu push`.

Each button sends a CLICK event whose key is a chat command's intent in capitals
(`BILLS`); the router starts that command's flow, as if the user had typed its word.
"""
from __future__ import annotations

from typing import Any

from billing.core import Core
from bot.wechat_api import WeChatAccount, WeChatApi, validate_menu
from handlers.i18n import N_, SOURCE_LOCALE, t

# (top button, [(sub-button, key), ...]): the menu holds one language, the programme's source one.
# WeChat gives an account one default menu for every follower; its conditional menus
# (menu/addconditional) no longer match on a follower's language, only on a user tag, so a
# menu per language would mean tagging every member by language. Chat replies follow
# the member's language, and a button sends a key (not words), so the flow it starts answers in it.
MENU = (
    (N_("信用就医"), ((N_("开通"), "ENROL"), (N_("额度"), "CREDIT"), (N_("解约"), "CANCEL_AGREEMENT"))),
    (N_("挂号缴费"), ((N_("挂号"), "BOOK"), (N_("账单"), "BILLS"), (N_("缴费"), "PAY"))),
    (N_("我的"), ((N_("家人"), "FAMILY"), (N_("帮助"), "HELP"))),
)


def build_menu(locale: str = SOURCE_LOCALE) -> dict[str, Any]:
    menu = {"button": [
        {"name": t(name, locale), "sub_button": [{"type": "click", "name": t(label, locale), "key": key} for label, key in subs]}
        for name, subs in MENU
    ]}
    validate_menu(menu)
    return menu


async def push_menu(core: Core, account: WeChatAccount) -> dict[str, Any]:
    """`xinyi menu push`: replaces the account's menu with ours; returns what was sent."""
    api = WeChatApi(core.db, account, clock=core.clock)
    menu = build_menu()
    try:
        await api.create_menu(menu)
    finally:
        await api.close()
    return menu
