"""开通, in the order of DESIGN §4.5: privacy consent, name, ID number, phone, the credit
commitment; then the line the policy gives. Where the policy lists financial institutions, the
member chooses one right before the commitment (seed 004: "授权开通……在信用就医公共服务平台上
自主选择金融机构"), its terms shown, and the line is capped by it. Signing again after 解约 asks
only the two documents (and the institution again). The consent is kept with its own time, apart
from the commitment.

ID and phone numbers wait in the conversation encrypted, and are shown only masked.

```mermaid
stateDiagram-v2
    [*] --> enrol:await_consent: 开通 / staff QR scan
    enrol:await_consent --> enrol:await_name: 同意
    enrol:await_consent --> enrol:await_commitment: 同意 (signing again)
    enrol:await_consent --> enrol:await_institution: 同意 (signing again, the policy lists institutions)
    enrol:await_name --> enrol:await_id_number
    enrol:await_id_number --> enrol:await_phone: eligible
    enrol:await_id_number --> enrol:await_name_for_id: the registry has another name
    enrol:await_name_for_id --> enrol:await_phone: the name (or a corrected ID number) matches
    enrol:await_id_number --> [*]: refused, with the reason and what to do instead
    enrol:await_phone --> enrol:await_commitment
    enrol:await_phone --> enrol:await_institution: the policy lists institutions
    enrol:await_institution --> enrol:await_commitment: a number
    enrol:await_commitment --> [*]: 同意 -> line granted
```
"""
from __future__ import annotations

from datetime import datetime

from billing import accounts, members
from billing.enquiry import eligibility_report
from billing.errors import Conflict, InvalidInput, NotEligible
from billing.identity import normalise_phone
from handlers.engine import Flow, Step, Turn
from billing.documents import document, document_url
from handlers.flows.institution import UNCLEAR_CHOICE, offer_institutions, say_chosen, tier_of
from handlers.flows.common import (
    STATUS, id_number_answered, mend_name_or_id, name_mismatch, pick, say_suspended_next, take_name,
)
from handlers.i18n import N_

# Both agreements (the privacy consent, the commitment) are answered 同意 or 取消.
NOT_AGREED = (N_("请回复 同意 或 取消。"), N_("好的，没有开通。需要时再回复 开通。"))
REFUSALS = {
    "not_in_registry": N_("没有查到您的医保参保信息，暂时不能开通。请核对姓名和身份证号后回复 开通 再试，或到医院服务台咨询。"),
    "name_mismatch": N_("姓名和身份证号对不上。请回复 开通 重新填写。"),
    "insured_elsewhere": N_("您的医保不在本地参保，暂时不能开通。看病可以在窗口正常付费。回复 菜单 看其他功能。"),
    "insurance_not_normal": N_("您的医保现在不是正常参保状态，暂时不能开通。请先到医保经办机构恢复参保，再回复 开通。"),
    "under_age": N_("未满 {min_age} 岁不能自己开通。可以请家长回复 家人，把您添加为家人。"),
    "dishonest": N_("按规定，被列入失信被执行人名单的暂时不能开通。看病可以在窗口正常付费；有疑问请到医院服务台咨询，回复 菜单 看其他功能。"),
    "no_credit_score": N_("没有查到您的信用分，暂时不能开通。授权使用信用分后再回复 开通。"),
}
ALREADY = {
    "active": N_("这个身份证号已经开通了。回复 额度 查看。"),
    "suspended": N_("这个身份证号已经开通，现在暂停使用中。"),
    "revoked": N_("这个身份证号的信用就医资格已取消，不能再开通。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。"),
    "blacklisted": N_("这个身份证号的信用就医资格已取消，不能再开通。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。"),
}


# What an enrolled member who asks to enrol again (开通, a staff member's QR code) can do instead.
ENROLLED_NEXT = {
    "active": N_("回复 额度 查看额度，回复 挂号 预约。"),
    "revoked": N_("不能再开通。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。"),
    "blacklisted": N_("不能再开通。有疑问请到医院服务台咨询，回复 账单 查看要付的钱。"),
}


async def already_enrolled(turn: Turn) -> bool:
    """True after telling a member who is enrolled already so, with their status and what to do."""
    member = await turn.member()
    if member is None or member.status not in ALREADY:
        return False
    turn.say("您已经开通信用就医了，现在的状态：{status}。", status=turn.t(STATUS[member.status]))
    if member.status == "suspended":
        say_suspended_next(turn)
    else:
        turn.say(ENROLLED_NEXT[member.status])
    return True


def say_already(turn: Turn, status: str | None) -> None:
    turn.say(ALREADY.get(status, N_("这个身份证号已经开通了。回复 额度 查看。")))
    if status == "suspended":
        say_suspended_next(turn)


def say_document(turn: Turn, name: str, lead: str) -> None:
    """The policy's document in brief (its first paragraph), with a link to the full text."""
    found = document(turn.core.policy, name, turn.locale)
    turn.say(lead, title=found.title, summary=found.paragraphs[0])
    turn.say("全文：{url}", url=document_url(turn.core, name, turn.locale))


def refuse(turn: Turn, reason: str) -> None:
    turn.say(REFUSALS.get(reason, N_("暂时不能开通。请到医院服务台咨询，回复 菜单 看其他功能。")),
             min_age=turn.core.policy.min_age)
    turn.end()


async def start(turn: Turn) -> None:
    if await already_enrolled(turn):
        return
    member = await turn.member()
    if member is not None and member.status == "cancelled":
        turn.data.update(again=True, name=member.name, id_number=member.id_number_enc, phone=member.phone_enc)
    turn.goto("enrol:await_consent")


async def ask_consent(turn: Turn) -> None:
    if turn.data.get("again"):
        turn.say("欢迎回来，重新签约只要两步。")
    say_document(turn, "privacy", N_("开通前请先看《{title}》：{summary}"))
    turn.say("同意请回复 同意，不同意回复 取消。")


async def answer_consent(turn: Turn) -> None:
    if turn.agreed(*NOT_AGREED):
        turn.data.update(consent_version=turn.core.policy.consent_version, consent_at=turn.core.clock.now().isoformat())
        turn.goto(before_commitment(turn) if turn.data.get("again") else "enrol:await_name")


def before_commitment(turn: Turn) -> str:
    """The step before the commitment: the choice of institution, where the policy lists them."""
    return "enrol:await_institution" if turn.core.policy.institutions else "enrol:await_commitment"


async def ask_name(turn: Turn) -> None:
    turn.say("请回复您的姓名（和身份证上一样）。")


async def ask_id_number(turn: Turn) -> None:
    turn.say("请回复您的身份证号（18 位）。")


async def answer_id_number(turn: Turn) -> None:
    number = id_number_answered(turn)
    if number is not None:
        await _check(turn, number)


async def ask_name_for_id(turn: Turn) -> None:
    turn.say("请回复身份证上的姓名；如果是身份证号发错了，就回复正确的身份证号。")


async def _recheck(turn: Turn) -> None:
    await _check(turn, turn.core.pii.decrypt(turn.data["id_number"]))


async def _check(turn: Turn, number: str) -> None:
    """The name and ID number against the registry and the policy: on to the phone, or why not."""
    status = (await eligibility_report(turn.core, number))["status"]
    if status in ALREADY:
        say_already(turn, status)
        turn.end()
        return
    verdict = await members.check_eligibility(turn.core, number, turn.data["name"])
    if verdict.reason == "name_mismatch":
        name_mismatch(turn, number)
        return
    if not verdict.eligible:
        refuse(turn, verdict.reason)
        return
    turn.data["id_number"] = turn.core.pii.encrypt(number)
    turn.goto("enrol:await_phone")


async def ask_phone(turn: Turn) -> None:
    turn.say("请回复您的手机号（11 位），用来发账单提醒。")


async def answer_phone(turn: Turn) -> None:
    try:
        phone = normalise_phone(turn.intent.answer)
    except InvalidInput:
        turn.retry("手机号不对，请回复 11 位手机号，比如 138 开头的。")
        return
    turn.data["phone"] = turn.core.pii.encrypt(phone)
    turn.goto(before_commitment(turn))


async def ask_institution(turn: Turn) -> None:
    turn.say("请选择给您信用额度的金融机构：")
    offer_institutions(turn, await tier_of(turn, turn.data["id_number"]))


async def ask_commitment(turn: Turn) -> None:
    say_document(turn, "commitment", N_("最后一步，《{title}》：{summary}"))
    turn.say("同意请回复 同意，就签好了；不同意回复 取消。")


async def answer_commitment(turn: Turn) -> None:
    if turn.agreed(*NOT_AGREED):
        await _enrol(turn)


async def _enrol(turn: Turn) -> None:
    core, data = turn.core, turn.data
    try:
        done = await members.enrol(
            core, openid=turn.incoming.openid, name=data["name"], id_number=core.pii.decrypt(data["id_number"]),
            phone=core.pii.decrypt(data["phone"]), consent_version=data["consent_version"],
            commitment_version=core.policy.commitment_version, staff_id=data.get("staff_id"),
            consent_at=datetime.fromisoformat(data["consent_at"]), institution=data.get("institution"),
        )
    except NotEligible as exc:
        refuse(turn, exc.details.get("reason", ""))
        return
    except Conflict as exc:
        reason = exc.details.get("reason")
        if reason == "openid_taken":
            turn.say("这个微信已经为别人开通了，一个微信只能开通一人。家人请让开通的人回复 家人 添加。")
        else:
            say_already(turn, reason)
        turn.end()
        return
    except InvalidInput as exc:  # the documents, or the institutions listed, changed while they were being read
        if exc.details.get("field") == "institution":
            turn.say("金融机构名单刚刚更新了，请回复 开通 重新开始。")
        else:
            turn.say("说明文件刚刚更新了，请回复 开通 重新开始。")
        turn.end()
        return
    await accounts.set_locale(core, turn.incoming.openid, turn.locale)
    turn.forget_member()
    turn.say("开通成功！您的信用额度是 {limit}。", limit=turn.money(done.limit_fen))
    chosen = core.policy.institution(done.institution)
    if chosen is not None:
        say_chosen(turn, chosen)
    if done.value_added and done.inpatient_fen:
        turn.say("您的信用分高，还有住院免押金额度 {amount}：住院不用先交押金。", amount=turn.money(done.inpatient_fen))
    elif done.value_added:
        turn.say("您的信用分高，还可以享受增值服务。")
    turn.say("看病时报身份证号，就能先看病、后付钱。回复 挂号 预约，回复 额度 查看。")
    if core.policy.marketing_allowed:  # an offer, never a step of enrolling (handlers/flows/marketing.py)
        turn.say("想收到合作机构的优惠信息，回复 订阅；随时回复 退订 取消。")
    turn.data.pop("staff_id", None)
    turn.end()


FLOW = Flow("enrol", N_("开通"), ("enrol",), start, left=NOT_AGREED[1], steps=(
    Step("enrol:await_consent", ask_consent, answer_consent),
    Step("enrol:await_name", ask_name, take_name("enrol:await_id_number")),
    Step("enrol:await_id_number", ask_id_number, answer_id_number),
    Step("enrol:await_name_for_id", ask_name_for_id, mend_name_or_id(_recheck)),
    Step("enrol:await_phone", ask_phone, answer_phone),
    Step("enrol:await_institution", ask_institution, pick("institution", "enrol:await_commitment", UNCLEAR_CHOICE)),
    Step("enrol:await_commitment", ask_commitment, answer_commitment),
))
