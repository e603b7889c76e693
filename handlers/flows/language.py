"""`English`, `繁體`, `简体`: the chat language, switched anywhere, even in the middle of a step
(the question is asked again in the new language). Notifications follow the member's choice."""
from __future__ import annotations

from billing.accounts import set_locale
from handlers.engine import Turn


async def switch(turn: Turn) -> None:
    turn.locale = turn.intent.slots["locale"]
    await set_locale(turn.core, turn.incoming.openid, turn.locale)
    # One message, translated per catalog into the name of its own language.
    turn.say("已切换为简体中文。")
    if turn.flow is not None:
        turn.goto(turn.state)
    else:
        turn.say("回复 菜单 看能做什么。")
