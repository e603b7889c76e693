"""解约: only with nothing owed, after a confirmation; 开通 signs again later.

```mermaid
stateDiagram-v2
    [*] --> cancel_agreement:await_confirm: 解约 (nothing owed)
    [*] --> [*]: money owed -> 缴费 first
    cancel_agreement:await_confirm --> [*]: 确认 -> cancelled
```
"""
from __future__ import annotations

from billing import accounts, members
from billing.errors import Conflict
from handlers.engine import Flow, Step, Turn
from handlers.flows.common import member_or_explain
from handlers.i18n import N_


async def start(turn: Turn) -> None:
    member = await member_or_explain(turn, active=True)
    if member is None:
        return
    owed = await accounts.credit(turn.core, member.id)
    if any(line.used_fen for line in owed.lines):
        turn.say("您还有 {amount} 没付清（包括正在看病的费用），付清后才能解约。回复 缴费 去付款。",
                 amount=turn.money(sum(line.used_fen for line in owed.lines)))
        return
    turn.goto("cancel_agreement:await_confirm")


async def ask_confirm(turn: Turn) -> None:
    turn.say("解约后，看病就不能先看病后付钱了。以后想用，回复 开通 可以重新签约。")
    turn.say("确定解约请回复 1，不解约回复 取消。")


async def answer_confirm(turn: Turn) -> None:
    if not turn.agreed(N_("请回复 1 确认解约，或回复 取消。"), N_("好的，没有解约。回复 菜单 看其他功能。")):
        return
    member = await turn.member()
    try:
        await members.cancel_agreement(turn.core, member.id)
    except Conflict:
        turn.say("您还有钱没付清，付清后才能解约。回复 缴费 去付款。")
    else:
        turn.forget_member()
        turn.say("已解约，谢谢使用！以后想用，回复 开通 重新签约。")
    turn.end()


FLOW = Flow("cancel_agreement", N_("解约"), ("cancel_agreement",), start, left=N_("好的，没有解约。回复 菜单 看其他功能。"),
            steps=(Step("cancel_agreement:await_confirm", ask_confirm, answer_confirm),))
