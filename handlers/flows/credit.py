"""额度: the line, what is used and left, the status, and the next bill due. No steps.
What is left is shown only to a member who can use it.

```mermaid
stateDiagram-v2
    [*] --> [*]: 额度 (answered at once)
```
"""
from __future__ import annotations

from billing import accounts
from handlers.engine import Flow, Turn
from handlers.flows.common import STATUS, member_or_explain, say_suspended_next
from handlers.i18n import N_

LINE_NAMES = {"outpatient": N_("门诊额度"), "inpatient": N_("住院额度")}


async def show(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    summary = await accounts.credit(turn.core, member.id)
    usable = summary.status == "active"
    for line in summary.lines:
        if usable:
            turn.say("{line}：{limit}，已用 {used}，可用 {available}", line=turn.t(LINE_NAMES[line.kind]),
                     limit=turn.money(line.limit_fen), used=turn.money(line.used_fen), available=turn.money(line.available_fen))
        else:
            turn.say("{line}：{limit}，已用 {used}，现在不能用", line=turn.t(LINE_NAMES[line.kind]),
                     limit=turn.money(line.limit_fen), used=turn.money(line.used_fen))
    turn.say("状态：{status}", status=turn.t(STATUS[summary.status]))
    chosen = turn.core.policy.institution(summary.institution)
    if chosen is not None:
        turn.say("金融机构：{name}（回复 金融机构 看约定）", name=chosen.name(turn.locale))
    if summary.status == "suspended":
        say_suspended_next(turn)
    if summary.next_bill is None:
        turn.say("没有要付的账单。回复 挂号 预约看病，回复 菜单 看其他功能。")
        return
    bill = summary.next_bill
    if bill.status == "open":
        turn.say("下一笔要付：{amount}，{due} 前", amount=turn.money(bill.unpaid_fen), due=turn.moment(bill.due_at))
    else:
        turn.say("已逾期：{amount}，{due} 就该付了", amount=turn.money(bill.unpaid_fen), due=turn.moment(bill.due_at))
    turn.say("回复 账单 看明细，回复 缴费 去付款。")


FLOW = Flow("credit", N_("额度"), ("credit",), show)
