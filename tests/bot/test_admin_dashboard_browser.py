"""The dashboard in Chromium: ECharts (the shipped, pinned copy) draws the three charts from the
JSON beside them, and the same figures stay readable as tables. A standalone page holds the
fragment, served with bot/static on loopback; the screenshot is artifacts/dashboard.png."""
from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.admin.dashboard import render_dashboard
from bot.cashier import STATIC_DIR
from browser_support import ARTIFACTS, browser, needs_chromium  # noqa: F401 (browser: a fixture)
from dashboard_support import HOSPITALS, two_weeks

pytestmark = [pytest.mark.browser, pytest.mark.slow, needs_chromium]

DRAWN = """() => [...document.querySelectorAll("[data-chart]")].map(box => {
    const option = echarts.getInstanceByDom(box).getOption();
    const canvas = box.querySelector("canvas");
    return {name: box.dataset.chart, width: canvas.width, height: canvas.height, version: echarts.version,
            series: option.series.map(s => s.data.map(d => typeof d === "object" ? d.value : Number(d)))};
})"""


@pytest.fixture
async def dashboard_url():
    figures = two_weeks()

    async def page(_request: web.Request) -> web.Response:
        body = render_dashboard(figures, HOSPITALS, "zh_Hans")
        return web.Response(text=f'<!doctype html><html lang="zh-Hans"><head><meta charset="utf-8">'
                                 f'<title>dashboard</title></head><body style="max-width:1100px">{body}</body></html>',
                            content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC_DIR)
    async with TestServer(app, host="127.0.0.1") as server:
        yield str(server.make_url("/")), figures


async def test_the_charts_draw_the_figures(browser, dashboard_url):
    url, figures = dashboard_url
    page = await browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(url)
    await page.wait_for_function("document.querySelectorAll('.chart-box.drawn').length === 3")
    drawn = {chart["name"]: chart for chart in await page.evaluate(DRAWN)}
    assert errors == []
    assert drawn["enrolments"]["series"] == [[day.enrolled for day in figures.days]]
    assert drawn["credit"]["series"] == [[day.credit_fen / 100 for day in figures.days],
                                         [day.repaid_fen / 100 for day in figures.days]]
    assert drawn["ladder"]["series"] == [list(figures.ladder.values())]
    assert {chart["version"] for chart in drawn.values()} == {"6.1.0"}
    assert all(chart["width"] > 300 and chart["height"] > 200 for chart in drawn.values()), drawn
    assert await page.locator("table").count() == 5  # the charts' three, the staff's, the on-call figures
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)

    await page.emulate_media()  # and without JavaScript: no empty chart boxes, the tables say it all
    context = await browser.new_context(java_script_enabled=False)
    plain = await context.new_page()
    await plain.goto(url)
    assert await plain.locator(".chart").evaluate_all("boxes => boxes.map(b => b.offsetHeight)") == [0, 0, 0]
    assert await plain.get_by_role("cell", name="¥123.45").count() == 1  # the first day's credit
