"""The HTML of the sandbox console. Every text is translated with t() here, escaped where it
is written into the page, and handed to the scripts as JSON that cannot close its <script>
element; the scripts (static/chat.js, static/hospital.js) set data as text, never as markup."""
from __future__ import annotations

import json
from typing import Any

from bot.html import HTML_LANG, LANGUAGE_NAMES, esc
from bot.sandbox.insurer import EVENTS_PATH
from bot.wechat_menu import MENU, build_menu
from handlers.flows.common import STATUS
from handlers.i18n import N_, SOURCE_LOCALE, t, yuan_sign

CATEGORIES = {"registration": N_("挂号"), "exam": N_("检查"), "lab": N_("检验"), "drug": N_("药品"),
              "treatment": N_("治疗"), "other": N_("其他")}
KINDS = {"outpatient": N_("门诊"), "emergency": N_("急诊"), "inpatient": N_("住院")}
EXCLUSIONS = {"crime": N_("打架斗殴、吸毒、服毒"), "abortion": N_("人工流产"),
              "third_party_liability": N_("第三方责任（交通、医疗事故）"), "malicious_debt": N_("有恶意欠费记录"),
              "other": N_("其他不适合记账的情形")}
CHARGE_STATUS = {"held": N_("已记账"), "released": N_("已撤销"), "posted": N_("已结算"), "refunded": N_("已退费"),
                 "prepaid": N_("已在窗口付"), "off_credit": N_("窗口付费")}
BILL_STATUS = {"open": N_("待付"), "paid": N_("已付清"), "overdue": N_("已逾期"), "advanced": N_("保险已先行垫付"),
               "written_off": N_("已核销")}
VISIT_STATUS = {"open": N_("就诊中"), "checked_out": N_("已结账")}
# Orders a doctor commonly gives, to post in one click: (category, name, amount in yuan).
COMMON_ORDERS = (("lab", N_("血常规"), "35.00"), ("exam", N_("腹部B超"), "180.00"), ("exam", N_("胃镜检查"), "600.00"),
                 ("drug", N_("奥美拉唑肠溶胶囊"), "42.50"), ("treatment", N_("静脉输液"), "25.00"))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def _document(locale: str, title: str, page: str, body: str, config: dict[str, Any], more: tuple[str, ...] = ()) -> str:
    """The page, its config and its scripts: console.js, the page's own, then `more` (names under static/)."""
    languages = "".join(
        f'<a href="?lang={code}"{" aria-current=true" if code == locale else ""}>{esc(name)}</a>'
        for code, name in LANGUAGE_NAMES
    )
    return (
        f'<!doctype html><html lang="{HTML_LANG[locale]}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{esc(title)}</title><link rel="stylesheet" href="/sandbox/static/console.css">'
        '<link rel="icon" href="/static/cashier.svg" type="image/svg+xml"></head>'
        f'<body class="{page}-page">{body}<nav class="languages">{languages}</nav>'
        f'<script type="application/json" id="config">{_json({"locale": locale, **config})}</script>'
        '<script src="/sandbox/static/console.js" defer></script>'
        + "".join(f'<script src="/sandbox/static/{name}.js" defer></script>' for name in (page, *more))
        + '</body></html>'
    )


def _texts(locale: str, messages: dict[str, str]) -> dict[str, str]:
    return {key: t(message, locale) for key, message in messages.items()}


# --- the chat simulator ------------------------------------------------------------------------

# What the scripts show; every page text is marked here, outside the f-strings that place it.
CHAT_TEXTS = {
    "account": N_("信医"),
    "phone_of": N_("{name}的手机"),
    "details": N_("详情"),
    "voice": N_("语音"),
    "keyboard": N_("打字"),
    "to_text": N_("转文字"),
    "typing": N_("对方正在输入…"),
    "failed": N_("没有发出去：{error}"),
    "text_placeholder": N_("输入文字"),
    "voice_placeholder": N_("说的话（模拟语音识别）"),
    "send": N_("发送"),
    "say": N_("说完了"),
    "to_keyboard": N_("切换到键盘"),
    "to_menu": N_("切换到菜单"),
    "to_voice": N_("按住说话（语音）"),
    "to_text_input": N_("切换到文字"),
    "fill": N_("填入"),
    "name": N_("姓名"),
    "id_number": N_("身份证号"),
    "phone": N_("手机号"),
    "relation": N_("家人称呼"),
    "family_name": N_("家人姓名"),
    "family_id_number": N_("家人身份证号"),
    "staff_tip": N_("工作人员发送“二维码”拿到自己的开通二维码，发送“我的居民”看帮谁开通了。"),
    "unread": N_("{count} 条新消息"),
}
CHAT_PAGE = {
    "title": N_("信医沙箱：微信聊天模拟器"),
    "phone": N_("手机"),
    "chat": N_("聊天记录"),
    "message": N_("消息"),
    "sandbox": N_("信医沙箱"),
    "intro": N_("左边是一部手机上的微信。你发的每条消息都像微信服务器那样签名、加密，发到本机的 /wechat；回复也一样验签、解密。账单通知是微信的模板消息。"),
    "personas": N_("选择身份"),
    "actions": N_("操作"),
    "follow": N_("关注公众号"),
    "scan": N_("扫社区工作人员的开通二维码"),
    "panel": N_("打开医院面板"),
    "story": N_("完整流程（一分钟）"),
}
# The sandbox insurer's side of the console (bot/sandbox/insurer.py; static/insurer.js draws it).
INSURER_TEXTS = {
    "title": N_("保险公司收到的项目事件"),
    "intro": N_("沙箱里的保险公司：信医把项目事件签名后发到 {url}，这里验签、按 event_id 去重后列出，最新的在上面。账单逾期时，北京的保险公司先行垫付：看 advance_requested。"),
    "empty": N_("还没有收到事件。"),
}
# The sandbox SMS provider's side (bot/sandbox/sms.py; static/sms.js draws it).
SMS_TEXTS = {
    "title": N_("发出的短信"),
    "intro": N_("沙箱里的短信服务商：信医要发的短信都停在这里，不会真的发出。号码已打码，标出是哪个身份的手机。政策规定用短信的提醒（北京离院时、24 小时、48 小时，南通超过 24 小时）和微信联系不到时的通知都在这里。"),
    "empty": N_("还没有发出短信。"),
}
SCAN_HINT = N_("{name}没开通？切换到{name}，点“扫社区工作人员的开通二维码”，就像工作人员上门帮忙开通。")
STORY = (
    N_("{relative}：点菜单“{enrol}”，同意隐私说明，填姓名、身份证号、手机号，签承诺书。"),
    N_("{relative}：点“{family_menu}”，添加{family}。"),
    N_("{relative}：点“{book}”，给{family}挂号。"),
    N_("医院面板：输入{family}的身份证号，查询、接诊、记账，撤销一项，医保分解后结账。"),
    N_("{relative}收到账单通知：点“详情”，用微信支付或支付宝付款。"),
    N_("{relative}：发送“额度”，额度已经恢复。"),
)


def menu_path(key: str, locale: str) -> str:
    """The menu button sending `key` as the phone shows it: `信用就医 › 开通`. WeChat gives an account
    one menu for everyone (a conditional menu can no longer match on language), so it is in the
    programme's language; on a page in another language the translation follows in brackets."""
    top, sub = next((top, label) for top, subs in MENU for label, sub_key in subs if sub_key == key)
    shown = f"{top} › {sub}"
    return shown if locale == SOURCE_LOCALE else f"{shown} ({t(top, locale)} › {t(sub, locale)})"


def chat_page(locale: str, personas: list[dict[str, Any]], insurer: bool = False, sms: bool = False) -> str:
    """`insurer`, `sms`: the sandbox insurer (bot/sandbox/insurer.py) or SMS provider (bot/sandbox/sms.py)
    is mounted, and what it got is shown."""
    texts, script_texts = _texts(locale, CHAT_PAGE), _texts(locale, CHAT_TEXTS)
    text = {key: esc(value) for key, value in texts.items()}
    relative = next((p for p in personas if p["key"] == "relative"), None)
    resident = next((p for p in personas if p["key"] == "elder"), personas[0])
    story = ""
    if relative and relative["family"]:
        who = {"relative": relative["name"], "family": relative["family"][1], "enrol": menu_path("ENROL", locale),
               "family_menu": menu_path("FAMILY", locale), "book": menu_path("BOOK", locale)}
        steps = "".join(f"<li>{esc(t(step, locale, **who))}</li>" for step in STORY)
        story = f'<h3>{text["story"]}</h3><ol class="story">{steps}</ol>'
    hint = esc(t(SCAN_HINT, locale, name=resident["name"]))
    body = (
        '<main class="stage">'
        # The persona switcher first: on a narrow screen it comes above the phone, not below the console.
        f'<section class="switcher"><h3>{text["personas"]}</h3><div class="personas" id="personas"></div></section>'
        f'<section class="phone" aria-label="{text["phone"]}">'
        '<p class="owner" id="owner"></p>'
        '<header class="wx-header"><span class="wx-back" aria-hidden="true">‹</span>'
        f'<h1>{esc(script_texts["account"])}</h1><span class="wx-more" aria-hidden="true">···</span></header>'
        f'<div class="wx-chat" id="chat" role="log" aria-live="polite" aria-label="{text["chat"]}"></div>'
        '<div class="wx-menu-popup" id="menu-popup" hidden></div>'
        '<footer class="wx-bar">'
        '<div class="wx-menu-bar" id="menu-bar"></div>'
        '<form class="wx-input" id="input-bar" hidden autocomplete="off">'
        '<button type="button" class="wx-icon" id="to-menu"></button>'
        '<button type="button" class="wx-icon words" id="voice-toggle"></button>'
        f'<input id="text" name="text" maxlength="600" aria-label="{text["message"]}">'
        '<button type="submit" class="wx-send" id="send"></button>'
        '</form></footer></section>'
        '<aside class="console">'
        f'<h2>{text["sandbox"]}</h2><p>{text["intro"]}</p>'
        '<div class="persona-data" id="persona-data"></div>'
        f'<h3>{text["actions"]}</h3><div class="actions">'
        f'<button type="button" id="follow">{text["follow"]}</button>'
        f'<button type="button" id="scan">{text["scan"]}</button>'
        f'<a class="button-link" href="/sandbox/hospital?lang={locale}" target="_blank" rel="noopener">{text["panel"]}</a>'
        f'</div><p class="hint">{hint}</p>{story}{_sms_section(locale) if sms else ""}'
        f'{_insurer_section(locale) if insurer else ""}</aside></main>'
    )
    return _document(locale, texts["title"], "chat", body, {
        "personas": personas, "menu": build_menu(), "texts": script_texts,
    }, more=tuple(name for name, shown in (("sms", sms), ("insurer", insurer)) if shown))


def _sms_section(locale: str) -> str:
    return (f'<section class="sms" aria-live="polite"><h3>{esc(t(SMS_TEXTS["title"], locale))}</h3>'
            f'<p class="hint">{esc(t(SMS_TEXTS["intro"], locale))}</p>'
            f'<ol class="sms-messages" id="sms-messages" data-empty="{esc(t(SMS_TEXTS["empty"], locale))}"></ol>'
            '</section>')


def _insurer_section(locale: str) -> str:
    return (f'<section class="insurer" aria-live="polite"><h3>{esc(t(INSURER_TEXTS["title"], locale))}</h3>'
            f'<p class="hint">{esc(t(INSURER_TEXTS["intro"], locale, url=EVENTS_PATH))}</p>'
            f'<ol class="insurer-events" id="insurer-events" data-empty="{esc(t(INSURER_TEXTS["empty"], locale))}"></ol>'
            '</section>')


# --- the hospital panel -----------------------------------------------------------------------

HOSPITAL_TEXTS = {
    "no_resident": N_("登记库里没有这个身份证号。"),
    "patient": N_("患者：{name}"),
    "member_status": N_("开通状态：{status}"),
    "available": N_("可用额度 {available}"),
    "served_by_family": N_("已被家人添加：看病记在{payer}的额度上"),
    "can_enrol": N_("可以开通，额度 {limit}。已被家人添加的，看病记在家人的额度上。"),
    "cannot_enrol": N_("不能开通（{reason}）。"),
    "not_served": N_("现在不能记账（{reason}）。"),
    "no_visits": N_("在这家医院还没有就诊。"),
    "credit_mark": N_("信用就医"),
    "not_on_credit": N_("不记账（{reason}）"),
    "check_in": N_("接诊"),
    "charge_no": N_("单号"),
    "category": N_("类别"),
    "item": N_("项目"),
    "amount": N_("金额"),
    "status": N_("状态"),
    "cancel": N_("撤销"),
    "add_charge": N_("记账"),
    "amount_yuan": N_("金额（元）"),
    "common_orders": N_("常用项目"),
    "checkout": N_("结账（医保分解）"),
    "insurance": N_("医保统筹"),
    "personal_account": N_("个人账户"),
    "self_pay": N_("自付"),
    "split_70": N_("按医保报销 70% 填入"),
    "must_add_up": N_("三部分加起来要等于金额"),
    "do_checkout": N_("结账"),
    "nothing_held": N_("没有待结算的项目：结账会直接结束这次就诊。"),
    "bill": N_("账单 {bill_no}：自付 {self_pay}，已付 {paid}（{status}）"),
    "query_bill": N_("查询账单"),
    "pay_link": N_("付款链接"),
    "bad_amount": N_("金额要是元，最多两位小数，比如 35.50"),
    "bad_number": N_("就诊号和单号只能用字母、数字和 -"),
    "request": N_("请求"),
    "answer": N_("答复 HTTP {status}"),
    "failed": N_("没有发出去：{error}"),
    "refused_http": N_("医院接口拒绝了（HTTP {status} {error}）：{message}"),
    "over_limit": N_("超出额度，没有记账：还能记 {available}。{message}"),
    "confirm_cancel": N_("撤销“{item}”（{amount}）？撤销后这一项不再记账。"),
}
HOSPITAL_PAGE = {
    "title": N_("信医沙箱：医院面板"),
    "to_chat": N_("打开聊天模拟器"),
    "intro": N_("这里扮演医院的 HIS：每个请求都用医院的 API 密钥签名（HMAC-SHA256），通过 HTTP 发到 /api/v1，答复原样显示在下面。金额按元输入，发出时换算成分。"),
    "hospital": N_("医院"),
    "id_number": N_("患者身份证号"),
    "find": N_("查询"),
    "new_visit": N_("新建就诊"),
    "visit_no": N_("就诊号"),
    "department": N_("科室"),
    "kind": N_("类型"),
    "exclusion": N_("不记账情形"),
    "none": N_("无"),
    "open_visit": N_("开始就诊"),
    "log": N_("请求和答复"),
}


def hospital_page(locale: str, personas: list[dict[str, Any]], hospitals: list[dict[str, Any]],
                  exclusions: tuple[str, ...]) -> str:
    texts = _texts(locale, HOSPITAL_PAGE)
    text = {key: esc(value) for key, value in texts.items()}
    kinds = _texts(locale, KINDS)
    excluded = _texts(locale, EXCLUSIONS)
    hospital_options = "".join(f'<option value="{esc(h["code"])}">{esc(h["name"])}（{esc(h["code"])}）</option>'
                               for h in hospitals)
    kind_options = "".join(f'<option value="{kind}">{esc(label)}</option>' for kind, label in kinds.items())
    exclusion_options = f'<option value="">{text["none"]}</option>' + "".join(
        f'<option value="{code}">{esc(excluded[code])}</option>' for code in exclusions)
    people = [(p["name"], p["id_number"]) for p in personas if p["id_number"]]
    people += [(p["family"][1], p["family"][2]) for p in personas if p["family"]]
    chips = "".join(f'<button type="button" class="chip" data-id-number="{esc(number)}">{esc(name)}</button>'
                    for name, number in people)
    body = (
        '<main class="panel">'
        f'<header class="panel-header"><h1>{text["title"]}</h1>'
        f'<a href="/sandbox/?lang={locale}">{text["to_chat"]}</a></header>'
        f'<p>{text["intro"]}</p>'
        '<section class="card"><form id="find" autocomplete="off">'
        f'<label>{text["hospital"]}<select id="hospital">{hospital_options}</select></label>'
        f'<label>{text["id_number"]}<input id="id-number" maxlength="18"></label>'
        f'<button type="submit">{text["find"]}</button></form>'
        f'<p class="chips">{chips}</p><div id="patient" role="status"></div></section>'
        f'<section class="card" id="new-visit" hidden><h2>{text["new_visit"]}</h2><form id="open-visit" autocomplete="off">'
        f'<label>{text["visit_no"]}<input id="visit-no" maxlength="32"></label>'
        f'<label>{text["department"]}<input id="department" list="departments" maxlength="100"></label>'
        '<datalist id="departments"></datalist>'
        f'<label>{text["kind"]}<select id="kind">{kind_options}</select></label>'
        f'<label>{text["exclusion"]}<select id="exclusion">{exclusion_options}</select></label>'
        f'<button type="submit">{text["open_visit"]}</button></form></section>'
        '<div id="visits"></div>'
        f'<section class="card"><h2>{text["log"]}</h2><div id="log"></div></section>'
        '</main>'
    )
    orders = [{"category": c, "name": t(name, locale), "yuan": yuan} for c, name, yuan in COMMON_ORDERS]
    return _document(locale, texts["title"], "hospital", body, {
        "hospitals": hospitals, "orders": orders, "yuan_sign": yuan_sign(locale), "texts": _texts(locale, HOSPITAL_TEXTS),
        "categories": _texts(locale, CATEGORIES), "kinds": kinds,
        "charge_status": _texts(locale, CHARGE_STATUS), "bill_status": _texts(locale, BILL_STATUS),
        "visit_status": _texts(locale, VISIT_STATUS), "member_status": _texts(locale, {"none": N_("未开通"), **STATUS}),
    })
