"""信用修复 (credit repair): what a suspended member still needs, said exactly (which bills,
how much, until when, the commitment signed again, an operator's approval); the commitment
signed in chat where the policy asks for it; and the repair completed when nothing is missing.

```mermaid
stateDiagram-v2
    [*] --> [*]: 信用修复 -> done, or what is still missing
    [*] --> repair:await_commitment: the policy asks for the commitment again
    repair:await_commitment --> [*]: 同意 -> signed; done, or what is still missing
```
"""
from __future__ import annotations

from billing import members
from billing.errors import Conflict, InvalidInput
from billing.repair import Repair, RepairIncomplete
from handlers.engine import Flow, Step, Turn
from handlers.flows.common import member_or_explain
from handlers.flows.enrol import say_document
from handlers.i18n import N_

# After a waiting period: a repair that completes by itself, or one the member asks for again.
AFTER_WAIT = {True: N_("到时会自动恢复，并通知您。回复 菜单 看其他功能。"), False: N_("到时请再回复 信用修复。")}
NOT_SIGNED = (N_("请回复 同意 或 取消。"), N_("好的，没有签署。需要时再回复 信用修复。"))
# Members whom repair does not concern, and what they can do instead.
NOT_SUSPENDED = {
    "active": N_("您的信用就医正常，不需要信用修复。回复 额度 查看。"),
    "cancelled": N_("您已经解约了，不需要信用修复。回复 开通 可以重新签约。"),
    "revoked": N_("您的信用就医资格已取消，不能办理信用修复。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。"),
    "blacklisted": N_("您的信用就医资格已取消，不能办理信用修复。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。"),
}


async def start(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    if member.status in NOT_SUSPENDED:
        turn.say(NOT_SUSPENDED[member.status])
        return
    await _complete(turn, member.id)


async def _complete(turn: Turn, member_id: int) -> None:
    try:
        status = await members.repair_credit(turn.core, member_id, asked_by="member")
    except RepairIncomplete as exc:
        _explain(turn, exc.repair)
        return
    turn.forget_member()
    if status == "active":
        turn.say("信用修复完成了，您的信用就医已恢复，看病又可以先看病、后付钱。回复 额度 查看。")
    else:
        turn.say("还不能恢复信用就医，请到医院服务台咨询。回复 账单 查看。")


def _explain(turn: Turn, repair: Repair) -> None:
    """Exactly what is missing, then what to type next."""
    if repair.overdue_bills:
        turn.say("还有 {count} 笔逾期的账单没付，共 {amount}：", count=len(repair.overdue_bills),
                 amount=turn.money(repair.unpaid_fen))
        for bill in repair.overdue_bills:
            turn.say("账单 {bill_no}：{amount}，{due} 就该付了", bill_no=bill.bill_no, amount=turn.money(bill.unpaid_fen),
                     due=turn.moment(bill.due_at))
    if not repair.required:
        turn.say("付清后会自动恢复，不用另外办理信用修复。回复 缴费 去付款。")
        return
    if repair.wait_until is not None:
        turn.say("付清后还要等到 {until}，才能完成信用修复。", until=turn.moment(repair.wait_until))
    if repair.approval_needed:
        turn.say("信用修复还要工作人员审核同意，请到医院服务台办理。")
    if repair.commitment_needed:
        turn.say("信用修复还要重新签署承诺书。")
        turn.goto("repair:await_commitment")
    elif repair.overdue_bills:
        turn.say("回复 缴费 去付款，付清后再回复 信用修复。")
    elif repair.approval_needed:
        turn.say("工作人员审核同意后，信用就医就会恢复，并通知您。回复 菜单 看其他功能。")
    elif repair.wait_until is not None:
        turn.say(AFTER_WAIT[repair.automatic])


async def ask_commitment(turn: Turn) -> None:
    say_document(turn, "commitment", N_("《{title}》：{summary}"))
    turn.say("同意请回复 同意，就签好了；不同意回复 取消。")


async def answer_commitment(turn: Turn) -> None:
    if not turn.agreed(*NOT_SIGNED):
        return
    turn.end()
    member = await turn.member()
    try:
        repair = await members.renew_commitment(turn.core, member.id, turn.core.policy.commitment_version)
    except (Conflict, InvalidInput):  # repaired meanwhile, or the policy's documents changed
        turn.say("现在不需要签署承诺书了。回复 信用修复 查看。")
        return
    turn.say("承诺书已重新签署。")
    if repair.missing:
        _explain(turn, repair)
    else:
        await _complete(turn, member.id)


FLOW = Flow("repair", N_("信用修复"), ("repair",), start, left=NOT_SIGNED[1],
            steps=(Step("repair:await_commitment", ask_commitment, answer_commitment),))
