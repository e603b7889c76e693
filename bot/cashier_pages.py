"""The cashier's HTML, for old eyes: large type, high contrast, the amount big, one button
per way to pay. No template engine: text goes into markup only through `tag` (and `esc`
for attributes), which escapes it; the JSAPI parameters are embedded as JSON that cannot
close its <script> element. `t()` is never called inside an f-string, where pybabel
(on Python 3.11) would not find the message."""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote, urlencode

from bot.html import HTML_LANG, LANGUAGE_NAMES, esc, tag, wrap
from handlers.i18n import day, department, moment, money, payment_channel, t

REFRESH_S = 2  # while the payment is being confirmed


def cashier_path(token: str, locale: str, channel: str = "", **query: object) -> str:
    path = f"/pay/{quote(token, safe='')}" + (f"/{channel}" if channel else "")
    return path + "?" + urlencode({"lang": locale, **query})


@dataclass(frozen=True)
class Item:
    name: str
    amount_fen: int
    insurance_fen: int
    personal_account_fen: int
    self_pay_fen: int
    status: str  # the charge's: posted (on this bill), prepaid (paid at the window) or refunded

    @property
    def on_bill(self) -> bool:
        return self.status == "posted"


@dataclass(frozen=True)
class Receipt:
    """One payment that went to the bill: what the payer may want to show later."""

    amount_fen: int
    channel: str  # wechatpay, alipay, or how the hospital took it (window, ...)
    at: datetime
    txn_id: str  # the gateway's transaction number, or the hospital's payment number


@dataclass(frozen=True)
class BillPage:
    token: str
    bill_no: str
    status: str
    self_pay_fen: int
    paid_fen: int
    due_at: datetime
    paid_at: datetime | None
    hospital: str
    department: str
    visited_at: datetime
    items: tuple[Item, ...]
    patient: str | None = None  # the name the member gave, as the chat's bill notice names them
    refunded_fen: int = 0  # paid, then refunded: items dropped after checkout
    receipts: tuple[Receipt, ...] = ()
    interest_fen: int = 0  # accrued past the interest-free period, as of the page (billing/interest.py)
    interest_paid_fen: int = 0
    interest_free: bool = False  # issued under an institution's terms and not past due_at: no interest yet

    @property
    def owed_fen(self) -> int:
        """The principal unpaid and the interest unpaid: what a trade opened now asks for."""
        return self.self_pay_fen - self.paid_fen + self.interest_fen - self.interest_paid_fen


@dataclass(frozen=True)
class Offer:
    """What the page offers: which channels, and whether it waits for a payment's result."""

    wechat: bool
    wechat_elsewhere: bool  # WeChat Pay exists, but this browser is not WeChat
    alipay: bool
    check: int | None  # the how-many-th look for the result after paying; None: not waiting


def document(locale: str, title: str, body: str, *, refresh_to: str | None = None, heading: str | None = None) -> str:
    """A whole page: `heading` tops it (the bill's, unless given), `body` is its markup."""
    refresh = f'<meta http-equiv="refresh" content="{REFRESH_S}; url={esc(refresh_to)}">' if refresh_to else ""
    header = wrap("header", tag("h1", heading or t("信医账单", locale)))
    return (
        f'<!doctype html><html lang="{HTML_LANG[locale]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'{tag("title", title)}<link rel="stylesheet" href="/static/cashier.css">'
        f'<link rel="icon" href="/static/cashier.svg" type="image/svg+xml">{refresh}</head>'
        f'<body>{header}{wrap("main", body)}<script src="/static/cashier.js" defer></script></body></html>'
    )


def bill_page(bill: BillPage, offer: Offer, locale: str, *, checks_max: int) -> str:
    waiting = offer.check is not None and bill.owed_fen > 0
    still_checking = waiting and offer.check < checks_max
    refresh_to = cashier_path(bill.token, locale, check=offer.check + 1) if still_checking else None
    body = _summary(bill, locale)
    if still_checking:  # no pay buttons meanwhile: a second payment would only be refunded
        body += tag("p", t("正在确认付款结果，请稍候…", locale), class_="notice", role="status")
    elif bill.owed_fen > 0:
        if waiting:
            advice = t("还没有收到付款结果。如果您已经付款，请不要重复付款，稍后再打开这个链接查看。", locale)
            body += tag("p", advice, class_="notice", role="status")
        body += _pay_buttons(bill, offer, locale)
    if bill.owed_fen <= 0 and bill.receipts:
        body += _receipts(bill, locale)
    body += _items(bill, locale) + _languages(bill.token, locale)
    return document(locale, t("信医账单", locale), body, refresh_to=refresh_to)


def _summary(bill: BillPage, locale: str) -> str:
    lines = [tag("p", f"{bill.hospital} · {department(bill.department, locale)}", class_="hospital")]
    if bill.patient:
        lines.append(tag("p", t("就诊人：{name}", locale, name=bill.patient), class_="patient"))
    lines.append(tag("p", t("就诊日期 {day}", locale, day=day(bill.visited_at, locale))))
    refund = (tag("p", t("已付 {paid}，已退回 {refunded}，实付 {kept}", locale,
                         paid=money(bill.paid_fen + bill.refunded_fen, locale),
                         refunded=money(bill.refunded_fen, locale), kept=money(bill.paid_fen, locale)), class_="refunded")
              if bill.refunded_fen else "")
    interest = (tag("p", t("含逾期利息 {interest}（已付 {paid}），先还利息再还本金", locale,
                           interest=money(bill.interest_fen, locale), paid=money(bill.interest_paid_fen, locale)),
                    class_="interest") if bill.interest_fen else "")
    if bill.owed_fen <= 0:
        lines += [tag("p", "✓ " + t("账单已付清", locale), class_="paid", role="status"),
                  tag("p", money(bill.self_pay_fen + bill.interest_fen, locale), class_="amount"), interest, refund]
        if bill.paid_at is not None:
            lines.append(tag("p", t("付款时间 {at}", locale, at=moment(bill.paid_at, locale))))
        return wrap("section", "".join(lines), class_="due")
    lines += [tag("p", t("需要支付", locale), class_="label"), tag("p", money(bill.owed_fen, locale), class_="amount"), interest]
    if refund:
        lines.append(refund)
    elif bill.paid_fen:
        lines.append(tag("p", t("已付 {amount}", locale, amount=money(bill.paid_fen, locale))))
    if bill.interest_free:
        lines.append(tag("p", t("{due} 前付清不收利息", locale, due=moment(bill.due_at, locale))))
    lines.append(tag("p", t("请在 {due} 前付款", locale, due=moment(bill.due_at, locale))))
    if bill.status == "overdue":
        lines.append(tag("p", t("已逾期，请尽快付款", locale), class_="warning"))
    elif bill.status == "advanced":
        lines.append(tag("p", t("保险机构已先行垫付，请尽快还款", locale), class_="warning"))
    return wrap("section", "".join(lines), class_="due")


def _receipts(bill: BillPage, locale: str) -> str:
    """The receipt after paying: one per payment that went to the bill."""
    shown = []
    for receipt in bill.receipts:
        channel = payment_channel(receipt.channel, locale)
        rows = ((t("账单号", locale), bill.bill_no), (t("就诊人", locale), bill.patient or ""),
                (t("金额", locale), money(receipt.amount_fen, locale)), (t("付款方式", locale), channel),
                (t("付款时间", locale), moment(receipt.at, locale)), (t("交易号", locale), receipt.txn_id))
        shown.append(wrap("dl", "".join(wrap("div", tag("dt", label) + tag("dd", value)) for label, value in rows if value)))
    return wrap("section", tag("h2", t("付款凭证", locale)) + "".join(shown), class_="receipt", aria_label=t("付款凭证", locale))


def _pay_buttons(bill: BillPage, offer: Offer, locale: str) -> str:
    buttons = []
    if offer.wechat:
        buttons.append(tag("a", t("微信支付", locale), class_="button wechat", href=cashier_path(bill.token, locale, "wechat")))
    elif offer.wechat_elsewhere:
        buttons.append(tag("p", t("微信支付请在微信里打开这个链接。", locale), class_="hint"))
    if offer.alipay:
        buttons.append(tag("a", t("支付宝支付", locale), class_="button alipay", href=cashier_path(bill.token, locale, "alipay")))
    buttons.append(tag("p", t("家人也可以打开这个链接代付。", locale), class_="hint"))
    return wrap("section", "".join(buttons), class_="pay")


def _parts(insurance_fen: int, personal_account_fen: int, self_pay_fen: int, locale: str) -> str:
    parts = ((t("医保支付", locale), insurance_fen), (t("个人账户", locale), personal_account_fen), (t("自付", locale), self_pay_fen))
    return wrap("dl", "".join(wrap("div", tag("dt", label) + tag("dd", money(fen, locale))) for label, fen in parts))


def _line(label: str, amount_fen: int, locale: str) -> str:
    return wrap("p", tag("span", label) + tag("span", money(amount_fen, locale)), class_="line")


def _items(bill: BillPage, locale: str) -> str:
    notes = {"prepaid": t("已在医院缴费", locale), "refunded": t("已退费", locale)}
    rows = "".join(
        wrap("li", _line(item.name, item.amount_fen, locale)
             + ("" if item.on_bill else tag("p", notes[item.status], class_="note"))
             + _parts(item.insurance_fen, item.personal_account_fen, item.self_pay_fen, locale),
             class_="item" if item.on_bill else "item off")
        for item in bill.items
    )
    counted = [item for item in bill.items if item.on_bill]
    totals = wrap("div", _line(t("合计", locale), sum(i.amount_fen for i in counted), locale) + _parts(
        *(sum(getattr(i, part) for i in counted) for part in ("insurance_fen", "personal_account_fen", "self_pay_fen")),
        locale), class_="totals")
    return wrap("section", tag("h2", t("费用明细", locale)) + wrap("ul", rows) + totals
                + tag("p", t("账单号 {bill_no}", locale, bill_no=bill.bill_no), class_="bill-no"), class_="items")


def _languages(token: str, locale: str) -> str:
    links = "".join(tag("a", name, href=cashier_path(token, code), aria_current="page" if code == locale else None)
                    for code, name in LANGUAGE_NAMES)
    return wrap("nav", links, class_="languages")


def wechat_page(bill: BillPage, params: dict[str, str], locale: str, *, sandbox_pay_path: str | None) -> str:
    """The step WeixinJSBridge takes over: the signed parameters, and one button to confirm."""
    data = json.dumps(params).replace("<", "\\u003c")  # a JSON string may never end the <script> block
    button = tag("button", t("确认支付", locale), type="button", class_="button wechat", id="pay-wechat",
                 data_done=cashier_path(bill.token, locale, check=1),
                 data_cancelled=t("已取消付款。需要时可以再点一次“确认支付”。", locale),
                 data_failed=t("付款没有成功，请再试一次。", locale),
                 data_outside=t("请在微信里打开这个链接付款。", locale),
                 data_sandbox_pay=sandbox_pay_path)
    sandbox = tag("p", t("沙箱环境：这是测试付款，不会真的扣钱。", locale), class_="warning") if sandbox_pay_path else ""
    body = (
        wrap("section", tag("p", f"{bill.hospital} · {department(bill.department, locale)}", class_="hospital")
             + tag("p", t("微信支付", locale), class_="label") + tag("p", money(bill.owed_fen, locale), class_="amount"),
             class_="due")
        + wrap("section", sandbox + button + tag("p", "", class_="notice", id="pay-message", role="alert", hidden=True)
               + tag("a", t("返回账单", locale), class_="back", href=cashier_path(bill.token, locale)), class_="pay")
        + f'<script type="application/json" id="jsapi">{data}</script>'
    )
    return document(locale, t("微信支付", locale), body)


def message_page(locale: str, title: str, text: str, *, back_to: str | None = None) -> str:
    back = tag("a", t("返回账单", locale), class_="back", href=back_to) if back_to else ""
    return document(locale, title, wrap("section", tag("h2", title) + tag("p", text) + back, class_="due"))
