"""What several flows share: who may use them, names of statuses and relations, names of
people, and the steps that pick a person, take a name, or mend a name that does not match
its ID number."""
from __future__ import annotations

from typing import Awaitable, Callable

from sqlalchemy import Row

from billing.errors import InvalidInput
from billing.identity import normalise_id_number
from handlers.engine import Turn
from handlers.i18n import N_
from handlers.intent import lexicon

STATUS = {
    "prospect": N_("未开通"),
    "active": N_("正常"),
    "suspended": N_("暂停使用"),
    "revoked": N_("已取消资格"),
    "blacklisted": N_("已列入失信名单"),
    "cancelled": N_("已解约"),
}
# What lifts a suspension, as the policy has it: paying alone, or paying and then credit repair.
SUSPENDED_NEXT = {
    False: N_("付清逾期的账单就能恢复，回复 账单 查看。"),
    True: N_("付清逾期的账单后，还要办理信用修复才能恢复。回复 信用修复 看还差什么。"),
}
RELATION = {"parent": N_("父母"), "child": N_("子女"), "spouse": N_("配偶")}
MAX_NAME_CHARS = 30


async def member_or_explain(turn: Turn, *, active: bool = False) -> Row | None:
    """The member writing, or None after telling them why they cannot go on and what to type."""
    member = await turn.member()
    if member is None or member.status == "prospect":
        turn.say("您还没有开通信用就医。回复 开通 开始，只要几步。")
        return None
    if not active or member.status == "active":
        return member
    if member.status == "suspended":
        turn.say("您的信用就医暂停使用中。")
        say_suspended_next(turn)
    elif member.status == "cancelled":
        turn.say("您已经解约了。回复 开通 可以重新签约。")
    else:
        turn.say("您的信用就医资格已取消，看病请在窗口付费。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。")
    return None


def say_suspended_next(turn: Turn) -> None:
    """What a suspended member does next, true to the policy: never "付清就能恢复" where repair is needed."""
    turn.say(SUSPENDED_NEXT[turn.core.policy.repair_required])


def relation_label(turn: Turn, relation: str) -> str:
    return turn.t(RELATION[relation])


def person_name(raw: str) -> str | None:
    """A name as on an ID card: letters (any script), `·` between parts, no digits or emoji."""
    words = raw.split()
    if all(not word.isascii() for word in words):
        words = ["".join(words)]  # 张 伟 -> 张伟; Latin names keep their spaces
    name = " ".join(words)
    if not 0 < len(name) <= MAX_NAME_CHARS or not all(ch.isalpha() or ch in "·• " for ch in name):
        return None
    return name


Answer = Callable[[Turn], Awaitable[None]]


def pick_person(key: str, next_state: str) -> Answer:
    """An answer step that takes a person from the numbered list into `turn.data[key]`."""
    return pick(key, next_state, N_("请回复名字前面的数字。"))


def pick(key: str, next_state: str, unclear: str) -> Answer:
    """An answer step that takes a choice from the numbered list into `turn.data[key]`, or says
    `unclear` (marked with N_) and asks again."""

    async def answer(turn: Turn) -> None:
        chosen = turn.picked()
        if chosen is None:
            turn.retry(unclear)
            return
        turn.data[key] = chosen
        turn.goto(next_state)

    return answer


def name_answered(turn: Turn) -> str | None:
    """The name answered, as on an ID card; None when it is not one (the turn asks again). A
    command or confirmation word (同意, 好的, 取消, 挂号 ...) or a relation (妈妈) is no name."""
    said = turn.intent
    if said.exact or said.compact in lexicon().relations:  # one known word: safe to say back
        turn.retry("“{word}”不是姓名。", word=said.answer)
        return None
    if said.name is not None:  # a sentence the parser reads as a command: not said back, it may hold numbers
        turn.retry("这不是姓名。")
        return None
    name = person_name(said.answer)
    if name is None:
        turn.retry("姓名只能是文字，不能有数字或符号。")
    return name


def id_number_answered(turn: Turn) -> str | None:
    """The ID number answered, checked and normalised; None when it is not one (the turn asks again)."""
    try:
        return normalise_id_number(turn.intent.answer)
    except InvalidInput:
        turn.retry("身份证号不对，请检查 18 位数字后再发。")
        return None


def take_name(next_state: str) -> Answer:
    """An answer step that takes a name as on an ID card into `turn.data["name"]`."""

    async def answer(turn: Turn) -> None:
        name = name_answered(turn)
        if name is None:
            return
        turn.data["name"] = name
        turn.goto(next_state)

    return answer


def name_mismatch(turn: Turn, id_number: str) -> None:
    """The registry has another name for this ID number: the number is kept and the flow's
    `:await_name_for_id` step asks for the name again (or a corrected number)."""
    turn.data["id_number"] = turn.core.pii.encrypt(id_number)
    turn.say("姓名和这个身份证号对不上。")
    turn.goto(f"{turn.flow.name}:await_name_for_id")


def mend_name_or_id(check: Answer) -> Answer:
    """The answer to `:await_name_for_id`: the name as on the ID card into `turn.data["name"]`,
    or, when the answer has digits, a corrected ID number into `turn.data["id_number"]`
    (encrypted); then `check` looks at the pair again."""

    async def answer(turn: Turn) -> None:
        if any(ch.isdigit() for ch in turn.intent.answer):
            number = id_number_answered(turn)
            if number is None:
                return
            turn.data["id_number"] = turn.core.pii.encrypt(number)
        else:
            name = name_answered(turn)
            if name is None:
                return
            turn.data["name"] = name
        await check(turn)

    return answer
