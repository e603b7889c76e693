"""账单: open bills itemised (insurance, personal account, self-pay), due time and pay link,
then the settled ones. 缴费: just what is owed and the links. No steps.

```mermaid
stateDiagram-v2
    [*] --> [*]: 账单 / 缴费 (answered at once)
```
"""
from __future__ import annotations

from billing import accounts
from billing.accounts import BillSummary
from handlers.engine import Flow, Turn
from handlers.flows.common import member_or_explain
from handlers import i18n
from handlers.i18n import N_, with_lang

MAX_BILLS = 5  # each open bill itemised is one message; WeChat sends only a few in a row
MAX_LINKS = 20
MAX_ITEMS = 8
HISTORY = 5
SHOWN_ITEMS = ("posted", "prepaid")  # what is on the bill; released and refunded items are gone from it
BILL_STATUS = {"open": N_("待付"), "overdue": N_("已逾期"), "advanced": N_("已逾期，保险已先行垫付"),
               "paid": N_("已付清"), "written_off": N_("已核销")}


def describe(turn: Turn, bill: BillSummary) -> None:
    """One bill, itemised, with what is left to pay and the link; whose visit it was when not the payer's."""
    turn.say("{hospital} {day}（{status}）", hospital=bill.hospital_name, day=turn.day(bill.issued_at),
             status=turn.t(BILL_STATUS[bill.status]))
    if bill.patient_id not in (None, bill.payer_id):
        turn.say("就诊人：{name}", name=bill.patient_name)
    items = [item for item in bill.items if item["status"] in SHOWN_ITEMS]
    for item in items[:MAX_ITEMS]:
        if item["status"] == "prepaid":
            turn.say("· {name} {amount}（已在医院付过）", name=item["name"], amount=turn.money(item["amount_fen"]))
        else:
            turn.say("· {name} {amount}：医保 {insurance}，个人账户 {personal}，自付 {self_pay}", name=item["name"],
                     amount=turn.money(item["amount_fen"]), insurance=turn.money(item["insurance_fen"]),
                     personal=turn.money(item["personal_account_fen"]), self_pay=turn.money(item["self_pay_fen"]))
    if len(items) > MAX_ITEMS:
        turn.say("……还有 {count} 项", count=len(items) - MAX_ITEMS)
    owed = bill.owed
    if owed.interest_fen:  # past the interest-free period: the interest, paid before the principal
        turn.say("自付共 {total}，已付 {paid}；逾期利息 {interest}，已付 {interest_paid}；还要付 {unpaid}（先还利息）",
                 total=turn.money(bill.self_pay_fen), paid=turn.money(bill.paid_fen), interest=turn.money(owed.interest_fen),
                 interest_paid=turn.money(owed.interest_paid_fen), unpaid=turn.money(bill.unpaid_fen))
    else:
        turn.say("自付共 {total}，已付 {paid}，还要付 {unpaid}", total=turn.money(bill.self_pay_fen),
                 paid=turn.money(bill.paid_fen), unpaid=turn.money(bill.unpaid_fen))
    if bill.unpaid_fen:
        if bill.institution is not None and turn.core.clock.now() <= bill.due_at:  # still in its interest-free days
            turn.say("{due} 前付清不收利息。", due=turn.moment(bill.due_at))
        turn.say("请在 {due} 前付款：{url}", due=turn.moment(bill.due_at), url=with_lang(bill.pay_url, turn.locale))


async def show_bills(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    unpaid = await accounts.bills(turn.core, payer_id=member.id, unpaid=True, limit=MAX_LINKS)
    if unpaid:
        turn.say("您有 {count} 笔账单要付：", count=len(unpaid))
    for bill in unpaid[:MAX_BILLS]:
        turn.new_message()
        describe(turn, bill)
    turn.new_message()
    if len(unpaid) > MAX_BILLS:
        turn.say("还有 {count} 笔没列出，回复 缴费 看全部付款链接。", count=len(unpaid) - MAX_BILLS)
    settled = await accounts.bills(turn.core, payer_id=member.id, unpaid=False, limit=HISTORY)
    if settled:
        turn.say("最近付清的账单：")
        for bill in settled:
            status = turn.t(BILL_STATUS[bill.status])
            if bill.channels:  # how it was paid: online here, or at the hospital (window, 刷脸, 一码付, ...)
                status = turn.t("{status}，{channels}", status=status, channels=i18n.listing(
                    [i18n.payment_channel(channel, turn.locale) for channel in bill.channels], turn.locale))
            total = turn.money(bill.self_pay_fen + bill.owed.interest_fen)  # with the interest it bore, if any
            if bill.patient_id not in (None, bill.payer_id):  # a relative's visit: say whose
                turn.say("· {day} {hospital} {total}（{status}，就诊人：{name}）", day=turn.day(bill.issued_at),
                         hospital=bill.hospital_name, total=total, status=status, name=bill.patient_name)
            else:
                turn.say("· {day} {hospital} {total}（{status}）", day=turn.day(bill.issued_at), hospital=bill.hospital_name,
                         total=total, status=status)
    if unpaid:
        turn.say("点上面的链接就能付款。回复 额度 看额度，回复 菜单 看其他功能。")
    elif settled:
        turn.say("现在没有要付的账单。回复 菜单 看其他功能。")
    else:
        turn.say("还没有账单。看病记账后，账单会发到这里。回复 挂号 预约看病。")


async def show_payable(turn: Turn) -> None:
    member = await member_or_explain(turn)
    if member is None:
        return
    unpaid = await accounts.bills(turn.core, payer_id=member.id, unpaid=True, limit=MAX_LINKS)
    if not unpaid:
        turn.say("没有要付的账单。回复 账单 看付过的账单。")
        return
    for bill in unpaid:
        if bill.patient_id not in (None, bill.payer_id):
            turn.say("{amount}（{hospital} {day}，就诊人：{name}）：{url}", amount=turn.money(bill.unpaid_fen),
                     hospital=bill.hospital_name, day=turn.day(bill.issued_at), name=bill.patient_name,
                     url=with_lang(bill.pay_url, turn.locale))
        else:
            turn.say("{amount}（{hospital} {day}）：{url}", amount=turn.money(bill.unpaid_fen), hospital=bill.hospital_name,
                     day=turn.day(bill.issued_at), url=with_lang(bill.pay_url, turn.locale))
    turn.say("点链接用微信支付或支付宝付款，家人也可以帮您付。回复 账单 看明细。")


BILLS = Flow("bills", N_("账单"), ("bills",), show_bills)
PAY = Flow("pay", N_("缴费"), ("pay",), show_payable)
