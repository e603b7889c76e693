"""What several flows share: who may use them, names of statuses and relations, names of
people, and the steps that pick a person or take a name."""
from __future__ import annotations

from typing import Awaitable, Callable

from sqlalchemy import Row

from billing.errors import InvalidInput
from billing.identity import normalise_id_number
from handlers.engine import Turn
from handlers.i18n import N_

STATUS = {
    "prospect": N_("未开通"),
    "active": N_("正常"),
    "suspended": N_("暂停使用"),
    "revoked": N_("已取消资格"),
    "blacklisted": N_("已列入失信名单"),
    "cancelled": N_("已解约"),
}
RELATION = {"parent": N_("父母"), "child": N_("子女"), "spouse": N_("配偶")}
MAX_NAME_CHARS = 30


async def member_or_explain(turn: Turn, *, active: bool = False) -> Row | None:
    """The member writing, or None after telling them why they cannot go on and what to type."""
    member = await turn.member()
    if member is None or member.status == "prospect":
        turn.say("你还没有开通信用就医。回复 开通 开始，只要几步。")
        return None
    if not active or member.status == "active":
        return member
    if member.status == "suspended":
        turn.say("你的信用就医暂停使用中，付清逾期的账单就能恢复。回复 账单 查看。")
    elif member.status == "cancelled":
        turn.say("你已经解约了。回复 开通 可以重新签约。")
    else:
        turn.say("你的信用就医资格已取消，看病请在窗口付费。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。")
    return None


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

    async def answer(turn: Turn) -> None:
        chosen = turn.picked()
        if chosen is None:
            turn.retry("请回复名字前面的数字。")
            return
        turn.data[key] = chosen
        turn.goto(next_state)

    return answer


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
        name = person_name(turn.intent.answer)
        if name is None:
            turn.retry("姓名只能是文字，不能有数字或符号。")
            return
        turn.data["name"] = name
        turn.goto(next_state)

    return answer
