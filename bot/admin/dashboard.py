"""The console's dashboard: the programme's figures (billing.reports) as an HTML fragment.

Tiles for the figures, and charts (daily enrolments, credit and repayments, the overdue
ladder as a funnel) drawn by static/admin-dashboard.js with Apache ECharts. Each chart's data
sits in a `<script type="application/json">` beside it and, for anyone without JavaScript, in
a plain table. No template engine: text reaches the markup only through `tag` and `esc`.
`t()` is never called inside an f-string, where pybabel would not find the message.
"""
from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Mapping, Sequence

from billing.errors import InvalidInput
from billing.reports import LADDER_STAGES, Figures, Scope
from bot.html import attributes, esc, tag, wrap
from handlers.i18n import N_, money, t

STYLESHEET = "/static/admin-dashboard.css"
SCRIPTS = ("/static/vendor/echarts/echarts.min.js", "/static/admin-dashboard.js")
DEFAULT_DAYS = 30

FIGURE_LABELS = {  # the figures a person reads, in the order they read them
    "enrolled": N_("开通人数"),
    "visits_on_credit": N_("信用就医人次"),
    "patients_served": N_("服务患者"),
    "repeat_rate": N_("二次以上重复使用占比"),
    "credit_fen": N_("信用结算金额"),
    "repaid_fen": N_("已还款金额"),
    "overdue_bills": N_("逾期账单"),
    "overdue_fen": N_("逾期金额"),
    "overdue_unpaid_fen": N_("逾期未还金额"),
    "overdue_rate": N_("逾期率"),
    "advanced_fen": N_("保险先行赔付"),
    "recovered_fen": N_("赔付后追回"),
    "suspended": N_("暂停资格"),
    "revoked": N_("取消资格"),
    "blacklisted": N_("列入失信名单"),
}
STAGE_LABELS = dict(zip(LADDER_STAGES, (
    N_("出账单"), N_("逾期账单"), N_("保险先行赔付账单"), N_("暂停资格人数"), N_("取消资格人数"), N_("失信名单人数"),
)))


def figure_text(figures: Figures, name: str, locale: str) -> str:
    """One figure as a person reads it: yuan for amounts, a percentage for rates, — for no rate."""
    value = getattr(figures, name)
    if name.endswith("_fen"):
        return money(value, locale)
    if name.endswith("_rate"):
        return "—" if value is None else f"{value:.2%}"
    return f"{value:,}"


def parse_day(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what}: not a date (YYYY-MM-DD): {text!r}", field=what) from None


def scope_from_query(query: Mapping[str, str], today: date, **narrowed) -> Scope:
    """The Scope a dashboard's GET form asks for (`from`, `to`, `hospital`); by default the last
    DEFAULT_DAYS China days up to today. `narrowed` is the viewer's role: `hospital=` or
    `staff_ids=`, which override what the query asks. A bad date or range is InvalidInput."""
    end = parse_day(query["to"], "to") if query.get("to") else today + timedelta(days=1)
    start = parse_day(query["from"], "from") if query.get("from") else end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise InvalidInput("from must be before to", field="from")
    return Scope(start, end, **{"hospital": query.get("hospital") or None, **narrowed})


def chart_json(data: object) -> str:
    """JSON that cannot end its <script> element, whatever the names in it."""
    return json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def table(caption: str, head: Sequence[str], rows: Sequence[Sequence[str]], **attrs: object) -> str:
    return wrap("table", tag("caption", caption)
                + wrap("thead", wrap("tr", "".join(tag("th", cell, scope="col") for cell in head)))
                + wrap("tbody", "".join(wrap("tr", "".join(tag("td", cell) for cell in row)) for row in rows)), **attrs)


def chart(name: str, title: str, data: dict, fallback: str) -> str:
    return wrap("figure", tag("figcaption", title)
                + tag("div", "", class_="chart", id=f"chart-{name}", data_chart=name, role="img", aria_label=title)
                + wrap("script", chart_json(data), type="application/json", id=f"chart-{name}-data")
                + fallback, class_="chart-box")


def filter_form(scope: Scope, hospitals: Sequence[tuple[str, str]], locale: str, hospital_fixed: bool) -> str:
    options = tag("option", t("全部医院", locale), value="") + "".join(
        tag("option", name, value=code, selected=True if code == scope.hospital else None) for code, name in hospitals)
    fields = [
        wrap("label", esc(t("起始日期", locale)) + f'<input{attributes(type="date", name="from", value=scope.start.isoformat())}>'),
        wrap("label", esc(t("截止日期（不含）", locale)) + f'<input{attributes(type="date", name="to", value=scope.end.isoformat())}>'),
    ]
    if not hospital_fixed:
        fields.append(wrap("label", esc(t("医院", locale)) + wrap("select", options, name_="hospital")))
    fields.append(tag("button", t("查看", locale), type="submit"))
    return wrap("form", "".join(fields), method="get", class_="dashboard-filter")


def render_dashboard(figures: Figures, hospitals: Sequence[tuple[str, str]], locale: str, *,
                     hospital_fixed: bool = False) -> str:
    """The dashboard fragment for `figures`: the filter form (its range and hospital are those of
    `figures.scope`; `hospitals` are (code, name) to choose from; `hospital_fixed` hides the
    choice, for a hospital's own staff), the tiles, the charts with their tables, the staff who
    onboarded members, and the on-call figures when the scope is the whole programme."""
    scope = figures.scope
    names = dict(hospitals)
    shown = names.get(scope.hospital, scope.hospital) if scope.hospital else t("全部医院", locale)
    last_day = scope.end - timedelta(days=1)
    heading = tag("h2", t("{start} 至 {end}，{hospital}", locale, start=scope.start.isoformat(), end=last_day.isoformat(),
                          hospital=shown))
    note = tag("p", t("开通人数和会员状态按全项目统计，不分医院。", locale), class_="note") if scope.hospital else ""
    tiles = wrap("dl", "".join(
        wrap("div", tag("dt", t(label, locale)) + tag("dd", figure_text(figures, name, locale)), class_="tile",
             data_figure=name)
        for name, label in FIGURE_LABELS.items()), class_="tiles")
    return wrap("section", f'<link{attributes(rel="stylesheet", href=STYLESHEET)}>' + filter_form(scope, hospitals, locale, hospital_fixed) + heading + note + tiles
                + daily_charts(figures, locale) + ladder_chart(figures, locale) + onboarders_table(figures, locale)
                + on_call_table(figures, locale)
                + "".join(wrap("script", "", src=src, defer=True) for src in SCRIPTS), class_="dashboard")


def daily_charts(figures: Figures, locale: str) -> str:
    days = [day.day.isoformat() for day in figures.days]
    enrolled, credit, repaid = t("开通人数", locale), t("信用结算金额", locale), t("已还款金额", locale)
    enrolments = chart("enrolments", t("每日开通人数", locale),
                       {"days": days, "series": [{"name": enrolled, "values": [day.enrolled for day in figures.days]}]},
                       table(t("每日开通人数", locale), (t("日期", locale), enrolled),
                             [(day, f"{d.enrolled:,}") for day, d in zip(days, figures.days)]))
    money_chart = chart("credit", t("每日信用结算与还款（元）", locale), {
        "days": days, "unit": "fen",
        "series": [{"name": credit, "values": [day.credit_fen for day in figures.days]},
                   {"name": repaid, "values": [day.repaid_fen for day in figures.days]}],
    }, table(t("每日信用结算与还款（元）", locale), (t("日期", locale), credit, repaid),
             [(day, money(d.credit_fen, locale), money(d.repaid_fen, locale)) for day, d in zip(days, figures.days)]))
    return enrolments + money_chart


def ladder_chart(figures: Figures, locale: str) -> str:
    stages = [(t(STAGE_LABELS[stage], locale), count) for stage, count in figures.ladder.items()]
    title = t("逾期阶梯", locale)
    return chart("ladder", title, {"stages": [{"name": name, "value": count} for name, count in stages]},
                 table(title, (t("阶段", locale), t("数量", locale)), [(name, f"{count:,}") for name, count in stages]))


def onboarders_table(figures: Figures, locale: str) -> str:
    rows = [(o.name if o.staff_id is not None else t("自行开通", locale), o.scene or "—", f"{o.enrolled:,}")
            for o in figures.onboarders]
    return table(t("按工作人员和二维码统计的开通人数", locale),
                 (t("工作人员", locale), t("二维码场景", locale), t("开通人数", locale)), rows, class_="onboarders")


def on_call_table(figures: Figures, locale: str) -> str:
    on_call = figures.on_call
    if on_call is None:
        return ""
    rows = [(t("当前会员", locale) + f" · {status}", f"{count:,}") for status, count in on_call.members.items()]
    rows += [(t("当前账单", locale) + f" · {status}", f"{totals.count:,} · {money(totals.unpaid_fen, locale)}")
             for status, totals in on_call.bills.items()]
    rows += [(t("待发送消息", locale), f"{on_call.outbox_pending:,}"), (t("发送失败消息", locale), f"{on_call.outbox_dead:,}"),
             (t("待退款", locale), f"{on_call.refunds_pending:,} · {money(on_call.refunds_pending_fen, locale)}")]
    return table(t("值班数字（全项目，此刻）", locale), (t("项目", locale), t("数量", locale)), rows, class_="on-call")
