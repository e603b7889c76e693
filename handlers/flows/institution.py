"""金融机构: which financial institution grants the member's line and on what terms (seed 004:
"市民可自主选择……金融机构"); 换金融机构: another one, for new bills only, refused while a bill is
unpaid (it stays with the institution that granted it). Where the policy lists no institutions
there is nothing to choose. The numbered list is also the step enrolment asks it in (enrol.py).

```mermaid
stateDiagram-v2
    [*] --> [*]: 金融机构 (answered at once)
    [*] --> change_institution:await_choice: 换金融机构, no unpaid bill
    [*] --> [*]: 换金融机构 with unpaid bills -> why not, and 缴费
    change_institution:await_choice --> [*]: a number -> changed, the new line said
```
"""
from __future__ import annotations

from billing import members
from billing.accounts import credit
from billing.errors import Conflict, NotEligible
from billing.policy import Institution
from handlers.engine import Flow, Step, Turn
from handlers.flows.common import member_or_explain
from handlers.i18n import N_, institution_terms

NONE_TO_CHOOSE = N_("本项目的信用额度由平台统一提供，不用选择金融机构。回复 额度 查看额度。")
UNPAID = N_("您还有 {count} 笔账单没付清。已出的账单按原来金融机构的约定还，付清后才能更换。回复 缴费 去付款。")
IN_VISIT = N_("您正在看病，记账还没结清。结账并付清后才能更换。回复 账单 查看。")
UNCLEAR_CHOICE = N_("请回复金融机构前面的数字，比如 1。")
NO_SCORE = N_("现在查不到您的信用分，暂时不能更换。授权使用信用分后再回复 换金融机构。")


def offer_institutions(turn: Turn, tier_fen: int | None) -> None:
    """The numbered list of the policy's institutions with each one's terms; with `tier_fen`, the
    line the member's credit score earns, the line each would give them."""
    options = []
    for institution in turn.core.policy.institutions:
        label = turn.t("{name}：{terms}", name=institution.name(turn.locale), terms=institution_terms(institution, turn.locale))
        if tier_fen is not None:
            label += turn.t("；您的额度 {limit}", limit=turn.money(turn.core.policy.line_limit(tier_fen, institution.code)))
        options.append((institution.code, label))
    turn.offer(options)
    turn.say("超过免息期还没还的，按天收利息，先还利息再还本金。请回复数字，比如 1。")


async def tier_of(turn: Turn, id_number_enc: str) -> int | None:
    """The line the member's credit score earns before any institution's cap, if the registry says."""
    verdict = await members.check_eligibility(turn.core, turn.core.pii.decrypt(id_number_enc))
    return verdict.limit_fen if verdict.eligible else None


def say_chosen(turn: Turn, institution: Institution) -> None:
    turn.say("金融机构：{name}，{terms}", name=institution.name(turn.locale), terms=institution_terms(institution, turn.locale))


async def show(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    policy = turn.core.policy
    if not policy.institutions:
        turn.say(NONE_TO_CHOOSE)
        return
    chosen = policy.institution((await credit(turn.core, member.id)).institution)
    if chosen is None:
        turn.say("您还没有选择金融机构。回复 换金融机构 选择。")
        return
    say_chosen(turn, chosen)
    turn.say("要换一家，回复 换金融机构，只对以后的账单有效。")


async def start_change(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    if not turn.core.policy.institutions:
        turn.say(NONE_TO_CHOOSE)
        return
    summary = await credit(turn.core, member.id)
    if summary.unpaid_bills:
        turn.say(UNPAID, count=summary.unpaid_bills)
        return
    turn.data["tier_fen"] = await tier_of(turn, member.id_number_enc)
    turn.goto("change_institution:await_choice")


async def ask_choice(turn: Turn) -> None:
    turn.say("请选择金融机构（以后的账单按它的约定）：")
    offer_institutions(turn, turn.data.get("tier_fen"))


async def answer_choice(turn: Turn) -> None:
    code = turn.picked()
    if code is None:
        turn.retry(UNCLEAR_CHOICE)
        return
    member = await turn.member()
    institution = turn.core.policy.institution(code)
    current = (await credit(turn.core, member.id)).institution
    turn.end()
    if code == current:
        turn.say("您现在用的就是{name}，没有更换。回复 额度 查看额度。", name=institution.name(turn.locale))
        return
    try:
        limit_fen = await members.change_institution(turn.core, member.id, code)
    except Conflict as exc:
        reason = exc.details.get("reason")
        if reason == "unpaid_bills":
            turn.say(UNPAID, count=exc.details["bills"])
        elif reason == "visit_in_progress":
            turn.say(IN_VISIT)
        else:
            turn.say("现在不能更换金融机构。回复 菜单 看其他功能。")
        return
    except NotEligible:
        turn.say(NO_SCORE)
        return
    turn.say("已换成{name}，以后的账单按它的约定：{terms}。", name=institution.name(turn.locale),
             terms=institution_terms(institution, turn.locale))
    turn.say("您的信用额度现在是 {limit}。回复 额度 查看。", limit=turn.money(limit_fen))


SHOW = Flow("institution", N_("金融机构"), ("institution",), show)
CHANGE = Flow("change_institution", N_("换金融机构"), ("change_institution",), start_change,
              (Step("change_institution:await_choice", ask_choice, answer_choice),),
              left=N_("好的，没有更换金融机构。回复 菜单 看其他功能。"))
