"""The dashboard fragment: its tiles and tables hold the figures, each chart's JSON the same
numbers, the filter form the chosen range and hospital; names are escaped."""
from __future__ import annotations

import json
from datetime import date
from html.parser import HTMLParser

import pytest

from billing.errors import InvalidInput
from billing.reports import Scope
from bot.admin.dashboard import chart_json, render_dashboard, scope_from_query
from dashboard_support import HOSPITALS, two_weeks


class Page(HTMLParser):
    """What a reader of the fragment finds: tiles, tables (by caption), chart data, form fields."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.tiles: dict[str, str] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self.charts: dict[str, dict] = {}
        self.fields: dict[str, str] = {}
        self.options: list[tuple[str, str, bool]] = []
        self._open: list[tuple[str, dict]] = []
        self._text = ""
        self._table: list[list[str]] | None = None
        self.feed(markup)

    def handle_starttag(self, name, attrs):
        attrs = dict(attrs)
        if name == "input":
            self.fields[attrs["name"]] = attrs["value"]
            return
        if name == "link":
            return
        self._open.append((name, attrs))
        self._text = ""
        if name == "table":
            self._table = []
        elif name == "tr":
            self._table.append([])

    def handle_data(self, data):
        self._text += data

    def handle_endtag(self, name):
        opened, attrs = self._open.pop()
        assert opened == name, (opened, name)
        text = self._text.strip()
        if name == "dd":
            self.tiles[self._open[-1][1]["data-figure"]] = text
        elif name in ("td", "th"):
            self._table[-1].append(text)
        elif name == "caption":
            self._caption = text
        elif name == "table":
            self.tables[self._caption] = self._table
        elif name == "script" and attrs.get("type") == "application/json":
            self.charts[attrs["id"].removeprefix("chart-").removesuffix("-data")] = json.loads(self._text)
        elif name == "option":
            self.options.append((attrs["value"], text, "selected" in attrs))


def test_tiles_and_tables_hold_the_figures_and_the_charts_the_same_numbers():
    figures = two_weeks()
    page = Page(render_dashboard(figures, HOSPITALS, "zh_Hans"))
    assert page.tiles["enrolled"] == f"{figures.enrolled:,}"
    assert page.tiles["credit_fen"] == "¥12,962.25" and figures.credit_fen == 1296225
    assert page.tiles["repeat_rate"] == "81.08%"  # 90 of 111 patients, seed 000's figure
    assert page.tiles["overdue_rate"] == "12.00%" and page.tiles["recovered_fen"] == "¥550.00"
    assert page.tiles["blacklisted"] == "1" and len(page.tiles) == 15

    enrolments = page.charts["enrolments"]
    assert enrolments["days"] == [d.day.isoformat() for d in figures.days]
    assert enrolments["series"][0]["values"] == [d.enrolled for d in figures.days]
    assert page.tables["每日开通人数"][1:] == [[d.day.isoformat(), str(d.enrolled)] for d in figures.days]

    credit = page.charts["credit"]
    assert [s["values"] for s in credit["series"]] == [[d.credit_fen for d in figures.days],
                                                       [d.repaid_fen for d in figures.days]]
    rows = page.tables["每日信用结算与还款（元）"]
    assert rows[0] == ["日期", "信用结算金额", "已还款金额"]
    assert rows[2] == ["2026-03-03", "¥246.90", "¥98.76"]

    assert [(s["name"], s["value"]) for s in page.charts["ladder"]["stages"]] == [
        ("出账单", 175), ("逾期账单", 21), ("保险先行赔付账单", 12), ("暂停资格人数", 9), ("取消资格人数", 2), ("失信名单人数", 1)]
    assert page.tables["逾期阶梯"][1:] == [[s["name"], str(s["value"])] for s in page.charts["ladder"]["stages"]]
    assert page.tables["按工作人员和二维码统计的开通人数"][1:] == [["刘社工<script>", "staff:1", "40"], ["自行开通", "—", "29"]]
    assert ["待退款", "1 · ¥2.00"] in page.tables["值班数字（全项目，此刻）"]


def test_the_form_keeps_the_range_and_hospital_and_names_are_escaped():
    markup = render_dashboard(two_weeks("H2"), HOSPITALS, "en")
    page = Page(markup)
    assert page.fields == {"from": "2026-03-02", "to": "2026-03-16"}
    assert page.options == [("", "All hospitals", False), ("H1", "首钢医院", False), ("H2", '石景山<b>医院</b> & "分院"', True)]
    assert '石景山&lt;b&gt;医院&lt;/b&gt; &amp; &quot;分院&quot;' in markup and "<b>" not in markup
    assert markup.count("<script") == 5 and "刘社工&lt;script&gt;" in markup  # 3 charts' data, ECharts and ours
    assert "2026-03-02 to 2026-03-15, " in markup  # the last day shown is the one before `to`
    assert "值班" not in markup and "On call" not in markup  # a hospital's view has no whole-programme figures
    assert "Enrolment and member statuses count the whole programme" in markup

    fixed = Page(render_dashboard(two_weeks("H2"), HOSPITALS, "en", hospital_fixed=True))
    assert fixed.options == []  # a hospital's own staff are not offered the others


def test_chart_json_cannot_close_its_script_element():
    text = chart_json({"name": "</script><script>alert(1)</script> & more"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"name": "</script><script>alert(1)</script> & more"}


def test_the_query_gives_the_scope_and_the_role_narrows_it():
    today = date(2026, 3, 20)
    assert scope_from_query({}, today) == Scope(date(2026, 2, 19), date(2026, 3, 21))  # the last 30 days
    assert scope_from_query({"from": "2026-03-02", "to": "2026-03-09", "hospital": "H1"}, today) == Scope(
        date(2026, 3, 2), date(2026, 3, 9), hospital="H1")
    assert scope_from_query({"hospital": "H2"}, today, hospital="H1").hospital == "H1"  # a hospital sees its own
    assert scope_from_query({}, today, staff_ids=frozenset({4})).staff_ids == {4}
    for query in ({"from": "2026-02-30"}, {"to": "<b>"}, {"from": "2026-03-09", "to": "2026-03-09"}):
        with pytest.raises(InvalidInput):
            scope_from_query(query, today)
