"""家人: bind a parent, child or spouse (relation, name, ID number; up to the policy's
limit), list them, follow their visits and bills and pay them, unbind them.

```mermaid
stateDiagram-v2
    [*] --> family:await_action: 家人
    family:await_action --> family:await_relation: 添加
    family:await_relation --> family:await_name
    family:await_name --> family:await_id_number
    family:await_id_number --> family:await_confirm
    family:await_id_number --> family:await_name_for_id: the registry has another name
    family:await_name_for_id --> family:await_confirm: the name (or a corrected ID number) matches
    family:await_confirm --> family:await_name_for_id: the registry has another name
    family:await_confirm --> [*]: 确认 -> bound
    family:await_action --> family:await_view: 看就诊和账单
    family:await_view --> [*]: visits, bills, pay links
    family:await_action --> family:await_unbind: 解除
    family:await_unbind --> family:await_unbind_confirm
    family:await_unbind_confirm --> [*]: 确认 -> unbound
```
"""
from __future__ import annotations

from billing import accounts, members
from billing.errors import Conflict, InvalidInput, NotEligible, NotFound
from billing.pii import mask_id_number
from handlers.engine import Flow, Step, Turn
from handlers.flows.bills import describe
from handlers.flows.common import (
    RELATION, id_number_answered, member_or_explain, mend_name_or_id, name_mismatch, pick_person, relation_label, take_name,
)
from handlers.i18n import N_

ACTIONS = {"add": N_("添加家人"), "view": N_("看家人的就诊和账单"), "unbind": N_("解除绑定")}
RELATION_CHOICES = {"parent": N_("父母（爸爸、妈妈）"), "child": N_("子女（儿子、女儿）"), "spouse": N_("配偶（老伴）")}
VISIT_STATUS = {"open": N_("就诊中"), "checked_out": N_("已结束")}


async def start(turn: Turn) -> None:
    if await member_or_explain(turn) is not None:
        turn.goto("family:await_action")


async def ask_action(turn: Turn) -> None:
    member = await turn.member()
    family = await accounts.family(turn.core, member.id)
    if family:
        turn.say("您的家人：")
        for d in family:
            turn.say_text(f"· {d.name}（{relation_label(turn, d.relation)}）{d.masked_id_number}")
    else:
        turn.say("您还没有添加家人。添加后，家人看病的费用可以记在您的额度上，账单发给您。")
    turn.say("要做什么？")
    turn.offer([(action, turn.t(ACTIONS[action])) for action in (("add", "view", "unbind") if family else ("add",))])
    turn.say("回复数字。")


async def answer_action(turn: Turn) -> None:
    action = turn.picked() or ("add" if "relation" in turn.intent.slots else None)
    if action is None:
        turn.retry("请回复前面的数字。")
    elif action == "add":
        if await member_or_explain(turn, active=True) is None:
            turn.end()
            return
        turn.data["relation"] = turn.intent.slots.get("relation")
        turn.goto("family:await_relation")
    else:
        turn.goto(f"family:await_{action}")


async def ask_relation(turn: Turn) -> None:
    if turn.data.get("relation"):
        turn.goto("family:await_name")
        return
    turn.say("TA 是您的什么人？")
    turn.offer([(relation, turn.t(label)) for relation, label in RELATION_CHOICES.items()])
    turn.say("回复数字，也可以说 妈妈、儿子、老伴。")


async def answer_relation(turn: Turn) -> None:
    relation = turn.picked() or turn.intent.slots.get("relation")
    if relation not in RELATION:
        turn.retry("请回复 1、2 或 3。")
        return
    turn.data["relation"] = relation
    turn.goto("family:await_name")


async def ask_name(turn: Turn) -> None:
    turn.say("请回复TA的姓名（和身份证上一样）。")


async def ask_id_number(turn: Turn) -> None:
    turn.say("请回复TA的身份证号（18 位）。")


async def answer_id_number(turn: Turn) -> None:
    number = id_number_answered(turn)
    if number is not None:
        await _check(turn, number)


async def ask_name_for_id(turn: Turn) -> None:
    turn.say("请回复TA身份证上的姓名；如果是身份证号发错了，就回复正确的身份证号。")


async def _recheck(turn: Turn) -> None:
    await _check(turn, turn.core.pii.decrypt(turn.data["id_number"]))


async def _check(turn: Turn, number: str) -> None:
    """A name the registry has under another for this ID number is asked again before the
    confirmation (someone the registry does not know may still be bound)."""
    verdict = await members.check_eligibility(turn.core, number, turn.data["name"])
    if verdict.reason == "name_mismatch":
        name_mismatch(turn, number)
        return
    turn.data["id_number"] = turn.core.pii.encrypt(number)
    turn.goto("family:await_confirm")


async def ask_confirm(turn: Turn) -> None:
    data = turn.data
    turn.say("添加 {name}（{relation}，身份证 {id_number}）为家人？TA 看病的费用可以记在您的额度上，账单发给您。",
             name=data["name"], relation=relation_label(turn, data["relation"]),
             id_number=mask_id_number(turn.core.pii.decrypt(data["id_number"])))
    turn.say("回复 1 确认，回复 取消 退出。")


async def answer_confirm(turn: Turn) -> None:
    if not turn.agreed(N_("请回复 1 确认，或回复 取消。"), N_("好的，没有添加。回复 家人 重新开始。")):
        return
    name = turn.data["name"]
    member = await turn.member()
    try:
        await members.bind_dependent(turn.core, member.id, turn.data["relation"], name,
                                     turn.core.pii.decrypt(turn.data["id_number"]))
    except InvalidInput as exc:
        if exc.details.get("field") == "name":  # the registry changed since the ID number was checked
            name_mismatch(turn, turn.core.pii.decrypt(turn.data["id_number"]))
            return
        turn.say("不能添加您自己。回复 家人 重新添加。")
    except Conflict as exc:
        if exc.details.get("reason") == "too_many_dependents":
            turn.say("最多只能添加 {count} 位家人。回复 家人 可以先解除一位。", count=turn.core.policy.max_dependents)
        else:
            turn.say("{name} 已经是您的家人了。回复 家人 查看。", name=name)
    except NotEligible as exc:
        if exc.details.get("reason") == "family_not_allowed":
            turn.say("按本地规定，这位家人不能记在您的额度上。回复 菜单 看其他功能。")
        else:
            turn.say("您的信用就医现在不能使用，暂时不能添加家人。回复 额度 查看。")
    else:
        turn.say("已添加 {name}。TA 看病时报身份证号就能记账，账单发给您。回复 挂号 可以给TA预约。", name=name)
    turn.end()


async def _ask_dependent(turn: Turn, question: str) -> None:
    member = await turn.member()
    family = await accounts.family(turn.core, member.id)
    if not family:
        turn.say("您还没有添加家人。回复 家人 添加。")
        turn.end()
        return
    turn.say(question)
    turn.offer([([d.id, d.name], d.name) for d in family])
    turn.say("回复数字。")


async def ask_view(turn: Turn) -> None:
    await _ask_dependent(turn, N_("看哪位家人？"))


async def answer_view(turn: Turn) -> None:
    chosen = turn.picked()
    if chosen is None:
        turn.retry("请回复名字前面的数字。")
        return
    dependent_id, name = chosen
    visits = await accounts.visits_of(turn.core, dependent_id)
    turn.say("{name} 最近的就诊：", name=name)
    for v in visits:
        turn.say("· {day} {hospital} {department}（{status}）", day=turn.day(v.started_at), hospital=v.hospital_name,
                 department=turn.department(v.department), status=turn.t(VISIT_STATUS[v.status]))
    if not visits:
        turn.say("还没有就诊记录。")
    for bill in await accounts.bills(turn.core, patient_id=dependent_id, unpaid=True):
        turn.new_message()
        describe(turn, bill)
    turn.new_message()
    turn.say("点链接就能替TA付款。回复 家人 返回，回复 菜单 看其他功能。")
    turn.end()


async def ask_unbind(turn: Turn) -> None:
    await _ask_dependent(turn, N_("解除哪位家人？"))


async def ask_unbind_confirm(turn: Turn) -> None:
    turn.say("解除 {name} 吗？以后TA看病就不能记在您的额度上了。", name=turn.data["dependent"][1])
    turn.say("回复 1 确认，回复 取消 退出。")


async def answer_unbind_confirm(turn: Turn) -> None:
    if not turn.agreed(N_("请回复 1 确认，或回复 取消。"), N_("好的，没有解除。回复 家人 查看。")):
        return
    dependent_id, name = turn.data["dependent"]
    member = await turn.member()
    try:
        await members.unbind_dependent(turn.core, member.id, dependent_id)
    except Conflict:
        turn.say("{name} 还有没结束的就诊，结束后才能解除。回复 家人 查看。", name=name)
    except NotFound:
        turn.say("{name} 已经解除过了。回复 家人 查看。", name=name)
    else:
        turn.say("已解除 {name}。回复 家人 查看。", name=name)
    turn.end()


FLOW = Flow("family", N_("家人"), ("family",), start, left=N_("好的，已取消，家人没有变动。回复 菜单 看其他功能。"), steps=(
    Step("family:await_action", ask_action, answer_action),
    Step("family:await_relation", ask_relation, answer_relation),
    Step("family:await_name", ask_name, take_name("family:await_id_number")),
    Step("family:await_id_number", ask_id_number, answer_id_number),
    Step("family:await_name_for_id", ask_name_for_id, mend_name_or_id(_recheck)),
    Step("family:await_confirm", ask_confirm, answer_confirm),
    Step("family:await_view", ask_view, answer_view),
    Step("family:await_unbind", ask_unbind, pick_person("dependent", "family:await_unbind_confirm")),
    Step("family:await_unbind_confirm", ask_unbind_confirm, answer_unbind_confirm),
))
