"""订阅 / 退订: partners' offers (营销信息), yes or no, apart from everything else (billing/marketing.py).
No steps: each answers at once and says where the member stands.

A yes is the bare word only (订阅, 訂閱, subscribe): in a sentence ("不要订阅") it may mean no, so the
member is asked to send the word alone. A no is taken in any words (退订, 退訂, TD, unsubscribe, stop).

```mermaid
stateDiagram-v2
    [*] --> [*]: 订阅 (yes, or says it is so already)
    [*] --> [*]: 退订 (no, or says it is so already)
```
"""
from __future__ import annotations

from billing import marketing
from handlers.engine import Flow, Turn
from handlers.i18n import N_


async def subscribe(turn: Turn) -> None:
    member = await turn.member()
    if member is None:
        turn.say("优惠信息只发给开通了信用就医的用户。回复 开通 开始，只要几步。")
        return
    if not turn.core.policy.marketing_allowed:
        turn.say("本项目不发送优惠信息，不用订阅。回复 菜单 看其他功能。")
        return
    if not turn.intent.exact:
        turn.say("想收到合作机构的优惠信息，请只回复 订阅 两个字。不想收就不用回复。")
        return
    choice = await marketing.subscribe(turn.core, member.id)
    if choice.changed:
        turn.say("已订阅：合作机构的优惠信息会通过微信发给您，不发短信。订不订都不影响您的信用就医。")
        turn.say("随时回复 退订 就不再接收。")
    else:
        turn.say("您已经订阅了优惠信息（{since} 起）。不想再收，回复 退订。", since=turn.moment(choice.since))


async def unsubscribe(turn: Turn) -> None:
    member = await turn.member()
    choice = await marketing.unsubscribe(turn.core, member.id) if member is not None else None
    if choice is not None and choice.changed:
        turn.say("已退订，不会再收到合作机构的优惠信息。回复 菜单 看其他功能。")
    else:
        turn.say("您没有订阅优惠信息，不会收到。回复 菜单 看其他功能。")


async def unfollowed(turn: Turn) -> None:
    """The account was unfollowed: a yes to offers ends with it."""
    member = await turn.member()
    if member is not None:
        await marketing.unfollowed(turn.core, member.id)


SUBSCRIBE = Flow("marketing_on", N_("订阅优惠信息"), ("marketing_on",), subscribe)
UNSUBSCRIBE = Flow("marketing_off", N_("退订优惠信息"), ("marketing_off",), unsubscribe)
