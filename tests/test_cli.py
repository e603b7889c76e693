"""`xinyi` in-process on a fresh SQLite file: outputs, database effects, and one-line
errors with exit code 1 for a user's mistakes."""
from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select, update

from billing import members, visits
from billing.clock import FixedClock
from billing.hospitals import add_hospital, hospital_secret
from billing.registry import DEMO_REGISTRY
from bot.cli import main
from bot.config import build_core, load_settings
from storage import migrate
from storage.models import CreditLine, Hospital, Outbox, Slot, Staff

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ZHANG_WEI = "110105198503120012"  # in the demo registry
HEADER = "department,doctor,date,start,end,capacity,fee_fen\n"
NOWHERE = "http://127.0.0.1:9"


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def one_line_error(self) -> str:
        """The error, checked to be one line and no traceback."""
        assert self.code == 1, self
        assert self.err.count("\n") == 1 and self.err.endswith("\n") and "Traceback" not in self.err, self.err
        return self.err.strip()


@pytest.fixture
def xinyi(tmp_path, monkeypatch, capsys):
    """`xinyi("stats")` runs the command against this test's own database and data folder."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("XINYI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XINYI_DATABASE_URL", f"sqlite+inline:///{tmp_path / 'cli.db'}")
    # Where a sandbox `xinyi serve` would be: nothing listens there, so the sandbox insurer cannot be reached.
    monkeypatch.setenv("XINYI_PUBLIC_URL", NOWHERE)

    def run(*args: str) -> Run:
        code = main(list(args))
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def migrated(xinyi):
    assert xinyi("migrate").code == 0
    return xinyi


def on_database(work, clock: FixedClock | None = None):
    """Run `await work(core)` on the database the CLI uses."""
    async def go():
        core = build_core(load_settings(), clock)
        try:
            return await work(core)
        finally:
            await core.db.close()

    return asyncio.run(go())


def count(model) -> int:
    async def work(core):
        async with core.db.transaction() as session:
            return await session.scalar(select(func.count()).select_from(model))

    return on_database(work)


def slots() -> list[tuple]:
    async def work(core):
        async with core.db.transaction() as session:
            return [tuple(row) for row in await session.execute(
                select(Slot.department, Slot.doctor, Slot.day, Slot.start, Slot.end, Slot.capacity, Slot.fee_fen, Slot.booked)
                .order_by(Slot.id)
            )]

    return on_database(work)


def test_commands_ask_for_a_migration_first(xinyi):
    for command in (["stats"], ["hospital", "add", "H1", "--name", "x"], ["sweep"]):
        assert xinyi(*command).one_line_error.endswith("has no xinyi tables: run `xinyi migrate` first")
    migrated = xinyi("migrate")
    assert migrated.code == 0 and f"schema revision {migrate.head_revision()} (the latest)" in migrated.out
    assert xinyi("migrate").code == 0  # nothing to do the second time
    assert xinyi("stats").code == 0


def test_commands_ask_for_the_migration_of_an_older_schema(xinyi):
    asyncio.run(migrate.upgrade(os.environ["XINYI_DATABASE_URL"], "0001"))
    assert xinyi("stats").one_line_error.endswith(
        f"is at schema revision 0001, this xinyi needs {migrate.head_revision()}: run `xinyi migrate` first")
    assert xinyi("migrate").code == 0 and xinyi("stats").code == 0


def test_usage_and_configuration_errors_are_one_line(xinyi, monkeypatch):
    assert xinyi().one_line_error == "xinyi: error: the following arguments are required: COMMAND (see xinyi --help)"
    assert "invalid choice: 'frobnicate'" in xinyi("frobnicate").one_line_error
    monkeypatch.setenv("XINYI_PORT", "eighty")
    assert xinyi("stats").one_line_error == "error: XINYI_PORT: not a port number (1 to 65535): 'eighty'"
    monkeypatch.delenv("XINYI_PORT")
    monkeypatch.setenv("XINYI_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    assert xinyi("stats").one_line_error.startswith("error: ")


def test_serve_refuses_several_workers_on_sqlite_and_in_the_sandbox(xinyi, monkeypatch):
    assert "a whole number from 1 to 64: '0'" in xinyi("serve", "--workers", "0").one_line_error
    assert xinyi("serve", "--workers", "2").one_line_error.startswith("error: --workers above 1 needs a real deployment")
    monkeypatch.setenv("XINYI_SANDBOX", "0")
    monkeypatch.setenv("XINYI_SECRET_KEY", "k" * 32)
    for name in ("APPID", "SECRET", "TOKEN"):
        monkeypatch.setenv(f"XINYI_WECHAT_{name}", "x")
    assert xinyi("serve", "--workers", "2").one_line_error == (
        "error: --workers above 1 needs PostgreSQL (XINYI_DATABASE_URL=postgresql+asyncpg://...): "
        "SQLite has one writer; run one worker on it")


def test_hospital_add_shows_the_secret_once_and_refuses_a_second_time(migrated):
    added = migrated("hospital", "add", "H1", "--name", "首钢医院")
    assert added.code == 0
    secret = added.out.splitlines()[-1].removeprefix("api secret: ")
    assert added.out == f"hospital H1 added: 首钢医院\napi secret: {secret}\n"
    assert "will not show it again" in added.err

    async def stored(core):
        return await hospital_secret(core, "H1")

    assert on_database(stored) == secret
    given = migrated("hospital", "add", "H2", "--name", "二院", "--secret", "a-secret-of-our-own-choosing")
    assert "api secret: a-secret-of-our-own-choosing" in given.out
    assert migrated("hospital", "add", "H1", "--name", "again").one_line_error == "error: hospital H1 exists already"
    assert "hospital code" in migrated("hospital", "add", "H 3", "--name", "x").one_line_error
    assert "at least 16" in migrated("hospital", "add", "H3", "--name", "x", "--secret", "short").one_line_error
    assert count(Hospital) == 2


def test_schedule_import_adds_then_updates_in_place(migrated, tmp_path):
    migrated("hospital", "add", "H1", "--name", "首钢医院")
    schedule = tmp_path / "week.csv"
    schedule.write_text(HEADER + "内科,王医生,2026-03-09,08:00,12:00,30,5000\n外科,李医生,2026-03-09,13:30,17:00,20,0\n",
                        encoding="utf-8")
    first = migrated("schedule", "import", "H1", str(schedule))
    assert (first.code, first.out) == (0, f"{schedule} -> H1: 2 slots added, 0 updated, 0 unchanged\n")

    schedule.write_text(HEADER + "内科,王医生,2026-03-09,08:00,11:30,40,6000\n外科,李医生,2026-03-09,13:30,17:00,20,0\n",
                        encoding="utf-8")
    second = migrated("schedule", "import", "H1", str(schedule))
    assert second.out.endswith("0 slots added, 1 updated, 1 unchanged\n")
    assert [s[:7] for s in slots()] == [
        ("内科", "王医生", datetime(2026, 3, 9).date(), "08:00", "11:30", 40, 6000),
        ("外科", "李医生", datetime(2026, 3, 9).date(), "13:30", "17:00", 20, 0),
    ]


def test_a_bad_schedule_row_imports_nothing_and_every_problem_names_its_line(migrated, tmp_path):
    migrated("hospital", "add", "H1", "--name", "首钢医院")
    schedule = tmp_path / "bad.csv"
    schedule.write_text(HEADER + "\n".join([
        "内科,王医生,2026-03-09,08:00,12:00,30,5000",   # 2: fine
        "内科,王医生,2026-3-9,08:00,12:00,30,5000",     # 3
        "内科,王医生,2026-02-30,08:00,12:00,30,5000",   # 4
        "内科,王医生,2026-03-10,12:00,08:00,30,5000",   # 5
        "内科,王医生,2026-03-11,8:00,12:00,30,5000",    # 6
        "内科,王医生,2026-03-12,08:00,12:00,0,5000",    # 7
        "内科,王医生,2026-03-13,08:00,12:00,30,50.5",   # 8
        "内科,王医生,2026-03-14,08:00,12:00,30,-1",     # 9
        "内科,王医生,2026-03-15,08:00,12:00,30",        # 10
        ",王医生,2026-03-16,08:00,12:00,30,5000",       # 11
        "内科,王医生,2026-03-09,08:00,12:00,30,5000",   # 12: line 2 again
    ]) + "\n", encoding="utf-8")
    run = migrated("schedule", "import", "H1", str(schedule))
    assert run.code == 1 and "Traceback" not in run.err
    assert run.err.splitlines() == [
        f"{schedule}:3: date must be YYYY-MM-DD, got '2026-3-9'",
        f"{schedule}:4: no such date 2026-02-30",
        f"{schedule}:5: start 12:00 must be before end 08:00",
        f"{schedule}:6: start must be HH:MM (00:00 to 23:59), got '8:00'",
        f"{schedule}:7: capacity must be a whole number from 1 to 10000, got '0'",
        f"{schedule}:8: fee_fen must be a whole number of fen, 0 or more, got '50.5'",
        f"{schedule}:9: fee_fen must be a whole number of fen, 0 or more, got '-1'",
        f"{schedule}:10: expected 7 columns",
        f"{schedule}:11: department must have 1 to 100 characters",
        f"{schedule}:12: the same slot as line 2",
        "error: 10 problem(s) in the schedule; nothing was imported",
    ]
    assert count(Slot) == 0


def test_schedule_import_refuses_an_unknown_hospital_a_bad_header_and_a_missing_file(migrated, tmp_path):
    schedule = tmp_path / "week.csv"
    schedule.write_text(HEADER + "内科,王医生,2026-03-09,08:00,12:00,30,5000\n", encoding="utf-8")
    assert migrated("schedule", "import", "NOPE", str(schedule)).one_line_error == "error: unknown hospital NOPE"
    migrated("hospital", "add", "H1", "--name", "首钢医院")
    schedule.write_text("dept,doctor\n内科,王医生\n", encoding="utf-8")
    assert f"{schedule}:1: the header must be" in migrated("schedule", "import", "H1", str(schedule)).err
    missing = migrated("schedule", "import", "H1", str(tmp_path / "missing.csv"))
    assert missing.code == 1 and "cannot read the file" in missing.err
    assert count(Slot) == 0


def test_staff_add(migrated):
    added = migrated("staff", "add", "oStaff_01", "--name", "刘社工")
    assert (added.code, added.out) == (0, "staff 1 added: 刘社工 (oStaff_01)\n")
    assert migrated("staff", "add", "oStaff_01", "--name", "again").one_line_error == "error: staff oStaff_01 exists already"
    assert "openid" in migrated("staff", "add", "o staff", "--name", "x").one_line_error
    assert count(Staff) == 1


@pytest.mark.parametrize("now, problem", [
    ("yesterday", "not an ISO date and time: 'yesterday'"),
    ("2026-03-07T09:00", "'2026-03-07T09:00' needs a UTC offset, e.g. 2026-03-07T09:00+08:00"),
])
def test_sweep_and_export_refuse_a_bad_now(migrated, now, problem):
    assert migrated("sweep", "--now", now).one_line_error == f"xinyi sweep: error: argument --now: {problem} (see xinyi sweep --help)"
    assert problem in migrated("export", "overdue", "--now", now).one_line_error


def test_sweep_on_a_locked_database_is_a_one_line_error(migrated, tmp_path, monkeypatch):
    monkeypatch.setattr("storage.db.SQLITE_BUSY_TIMEOUT_S", 0.2)
    other = sqlite3.connect(tmp_path / "cli.db", isolation_level=None)  # another process writing
    other.execute("BEGIN IMMEDIATE")
    try:
        assert migrated("sweep").one_line_error == "error: database: database is locked"
    finally:
        other.close()


# By the sweep below: enrolled, bill issued, bill overdue, the 48 h reminder, suspended.
MESSAGES = 5
# And the programme events: bill_issued, bill_overdue, advance_requested, member_suspended.
EVENTS = 4


def make_overdue_bill() -> str:
    """Zhang Wei (Beijing policy, due in 48 h) leaves with 100.00 yuan self-pay on 2 March."""
    async def work(core):
        await add_hospital(core, "H1", "首钢医院")
        await members.enrol(core, openid="oZhangWei", name="张伟", id_number=ZHANG_WEI, phone="13800138000",
                            consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version)
        await visits.open_visit(core, "H1", {"visit_no": "V1", "id_number": ZHANG_WEI, "department": "内科",
                                             "kind": "outpatient", "exclusion": None})
        await visits.post_charge(core, "H1", "V1", {"charge_no": "C1", "category": "exam", "name": "血常规",
                                                    "amount_fen": 12345})
        answer = await visits.checkout(core, "H1", "V1", {"items": [
            {"charge_no": "C1", "insurance_fen": 2345, "personal_account_fen": 0, "self_pay_fen": 10000},
        ]})
        return answer["bill_no"]

    return on_database(work, FixedClock(START))


def test_sweep_stats_and_overdue_export_tell_the_same_story(migrated, tmp_path):
    bill_no = make_overdue_bill()
    swept = migrated("sweep", "--now", "2026-03-07T17:00+08:00")
    assert swept.out == (
        "sweep at 2026-03-07T09:00:00+00:00: 0 trades or refunds reconciled, 1 bills overdue, 1 advanced by the insurer, 0 bills' interest accrued, 1 reminders, 1 status changes, "
        f"outbox {MESSAGES} sent, 0 failed, events 0 sent, {EVENTS} failed, 1 members audited, 0 breaches\n"
    )  # the sandbox insurer is in `xinyi serve`, and none runs: the events wait for it
    assert on_database(_outbox_by_status) == {"sent": MESSAGES, "pending": EVENTS}

    stats = migrated("stats").out.splitlines()  # from the day the hospital joined to today
    assert stats[0].startswith("2026-03-02 至 ")
    for line in ("  开通人数: 1", "  信用结算金额: ¥100.00", "  逾期账单: 1", "  逾期率: 100.00%", "  保险先行赔付: ¥100.00",
                 "  赔付后追回: ¥0.00", "  暂停资格: 1", "  二次以上重复使用占比: 0.00%", "账单 advanced：1 张，未付 ¥100.00"):
        assert line in stats
    assert stats[-2:] == [f"消息：待发送 {EVENTS}，发送失败 0", "退款：待退 0 笔，共 ¥0.00"]
    assert "  Overdue rate: 100.00%" in migrated("stats", "--lang", "en").out.splitlines()

    header = ["账单号", "医院代码", "医院", "姓名", "身份证号（脱敏）", "手机号（脱敏）", "会员状态", "自付金额（分）",
              "已付金额（分）", "未付金额（分）", "未付金额（元）", "到期时间", "逾期天数", "账单阶段", "保险先行赔付应于",
              "保险先行赔付申请时间", "利息（分）", "已付利息（分）"]
    # Beijing: the insurer advances on the due day; the sweep asked for it on 7 March.
    row = [bill_no, "H1", "首钢医院", "张伟", "110105********0012", "138****8000", "suspended", "10000", "0", "10000",
           "100.00", "2026-03-04 17:00", "3", "advanced", "2026-03-04 17:00", "2026-03-07 17:00", "0", "0"]
    exported = migrated("export", "overdue", "--now", "2026-03-07T17:00+08:00")
    assert exported.out.startswith("\ufeff")  # the BOM, on standard output as in a file
    assert list(csv.reader(io.StringIO(exported.out.removeprefix("\ufeff")))) == [header, row]
    assert ZHANG_WEI not in exported.out and "13800138000" not in exported.out

    target = tmp_path / "overdue.csv"
    written = migrated("export", "overdue", "--now", "2026-03-07T17:00+08:00", "--output", str(target))
    assert (written.code, written.out, written.err) == (0, "", f"1 overdue bills written to {target}\n")
    with target.open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle)) == [header, row]
    before_due = migrated("export", "overdue", "--now", "2026-03-04T08:59Z").out.removeprefix("\ufeff")
    assert list(csv.reader(io.StringIO(before_due))) == [header]

    workbook = tmp_path / "逾期.xlsx"  # the format follows the file's name
    written = migrated("export", "overdue", "--now", "2026-03-07T17:00+08:00", "--output", str(workbook), "--lang", "en")
    assert (written.code, written.err) == (0, f"1 overdue bills written to {workbook}\n")
    sheet = load_workbook(workbook, read_only=True).active
    cells = list(sheet.values)
    assert cells[0][:3] == ("Bill number", "Hospital code", "Hospital")
    assert cells[1][:10] == (bill_no, "H1", "首钢医院", "张伟", "110105********0012", "138****8000", "suspended", 10000, 0, 10000)
    assert cells[1][11:] == (datetime(2026, 3, 4, 17, 0), 3, "advanced", datetime(2026, 3, 4, 17, 0), datetime(2026, 3, 7, 17, 0), 0, 0)

    reports = migrated("export", "credit-report", "--now", "2026-03-07T17:00+08:00").out.removeprefix("\ufeff")
    assert len(list(csv.reader(io.StringIO(reports)))) == 1  # suspended, not yet reported: that comes with the blacklist

    # 90 days after the insurer's advance: blacklisted and reported to the central bank's credit system.
    assert migrated("sweep", "--now", "2026-06-03T17:00+08:00").code == 0
    target = tmp_path / "reports.xlsx"
    written = migrated("export", "credit-report", "--now", "2026-06-04T17:00+08:00", "--output", str(target),
                       "--from", "2026-06-03", "--to", "2026-06-03")
    assert (written.code, written.err) == (0, f"1 credit reports written to {target}\n")
    [header, report] = load_workbook(target, read_only=True).active.values
    assert header[:6] == ("姓名", "身份证号（脱敏）", "手机号（脱敏）", "会员状态", "报送事由", "逾期阶段")
    assert report == ("张伟", "110105********0012", "138****8000", "blacklisted", "central_bank_credit_system", "blacklisted",
                      "ladder:days_since_advance>=90", datetime(2026, 6, 3, 17, 0), datetime(2026, 6, 3, 17, 0),
                      "pending", None, 1, 10000, 100, datetime(2026, 3, 4, 17, 0), 92)
    other_day = migrated("export", "credit-report", "--from", "2026-06-04").out.removeprefix("\ufeff")
    assert len(list(csv.reader(io.StringIO(other_day)))) == 1


@pytest.mark.parametrize(("args", "problem"), [
    (("--hospital", "H9"), "error: no hospital with the code 'H9'"),
    (("--format", "pdf"), "argument --format: invalid choice: 'pdf'"),
    (("--from", "2026-13-01"), "argument --from: not a date (YYYY-MM-DD): '2026-13-01'"),
    (("--from", "2026-03-05", "--to", "2026-03-04"), "error: --from 2026-03-05 is after --to 2026-03-04"),
    (("--staff", "one"), "argument --staff: invalid int value: 'one'"),
    (("--lang", "fr"), "argument --lang: invalid choice: 'fr'"),
])
def test_export_refuses_bad_arguments_in_one_line_and_leaves_no_file(migrated, tmp_path, args, problem):
    target = tmp_path / "out.csv"
    assert problem in migrated("export", "overdue", "--output", str(target), *args).one_line_error
    assert not target.exists()


def test_stats_json_carries_the_design_keys_for_a_range_and_a_hospital(migrated):
    make_overdue_bill()
    migrated("sweep", "--now", "2026-03-07T17:00+08:00")
    week = json.loads(migrated("stats", "--json", "--from", "2026-03-01", "--to", "2026-03-08").out)
    assert {key: week[key] for key in ("enrolled", "visits_on_credit", "credit_fen", "repeat_rate", "overdue_bills",
                                       "overdue_rate", "advanced_fen", "recovered_fen", "blacklisted")} == {
        "enrolled": 1, "visits_on_credit": 1, "credit_fen": 10000, "repeat_rate": 0.0, "overdue_bills": 1,
        "overdue_rate": 1.0, "advanced_fen": 10000, "recovered_fen": 0, "blacklisted": 0,
    }
    assert (week["from"], week["to"], week["hospital"], len(week["days"])) == ("2026-03-01", "2026-03-08", None, 7)
    assert week["days"][1] == {"day": "2026-03-02", "enrolled": 1, "credit_fen": 10000, "repaid_fen": 0}
    assert week["on_call"]["members"]["suspended"] == 1

    at_h1 = json.loads(migrated("stats", "--json", "--from", "2026-03-01", "--to", "2026-03-08", "--hospital", "H1").out)
    assert (at_h1["credit_fen"], at_h1["hospital"], at_h1["on_call"]) == (10000, "H1", None)
    later = json.loads(migrated("stats", "--json", "--from", "2026-03-03", "--to", "2026-03-08").out)
    assert (later["enrolled"], later["credit_fen"], later["overdue_rate"], later["repeat_rate"]) == (0, 0, None, None)


@pytest.mark.parametrize("args, error", [
    (["--from", "2026-02-30"], "xinyi stats: error: argument --from: not a date (YYYY-MM-DD): '2026-02-30' (see xinyi stats --help)"),
    (["--to", "March"], "xinyi stats: error: argument --to: not a date (YYYY-MM-DD): 'March' (see xinyi stats --help)"),
    (["--from", "2026-03-08", "--to", "2026-03-08"], "error: --from 2026-03-08 must be before --to 2026-03-08"),
    (["--hospital", "H9"], "error: unknown hospital H9"),
])
def test_stats_refuses_bad_dates_and_an_unknown_hospital(migrated, args, error):
    refused = migrated("stats", *args)
    assert (refused.code, refused.out, refused.one_line_error) == (1, "", error)


async def _outbox_by_status(core) -> dict[str, int]:
    async with core.db.transaction() as session:
        return dict((await session.execute(select(Outbox.status, func.count()).group_by(Outbox.status))).all())


def test_sweep_outside_the_sandbox_sends_through_wechat_and_loses_nothing_when_it_is_down(migrated, monkeypatch):
    make_overdue_bill()
    secret_key = load_settings().secret_key  # the sandbox key that encrypted the data
    monkeypatch.setenv("XINYI_SANDBOX", "0")
    monkeypatch.setenv("XINYI_SECRET_KEY", secret_key)
    for name in ("APPID", "SECRET", "TOKEN"):
        monkeypatch.setenv(f"XINYI_WECHAT_{name}", "x")
    assert "XINYI_WECHAT_TEMPLATES: template ids are missing" in migrated("sweep").one_line_error
    monkeypatch.setenv("XINYI_WECHAT_TEMPLATES", "bill_issued=T1,bill_reminder=T2,bill_overdue=T3")
    monkeypatch.setenv("XINYI_WECHAT_API_BASE", "http://127.0.0.1:9")  # nothing listens there
    swept = migrated("sweep", "--now", "2026-03-07T17:00+08:00")
    # The enrolment was told in the chat; the four other notices need WeChat, which is down: they
    # stay queued for the next run, nothing is dropped. No XINYI_EVENTS_URL: the events are kept, not sent.
    # The SMS Beijing sends beside WeChat (the bill's, the 48 h reminder's) are queued for the next run too.
    assert swept.code == 0 and "outbox 1 sent, 4 failed, events 0 sent, 0 failed" in swept.out
    assert on_database(_outbox_by_status) == {"sent": 1, "pending": MESSAGES - 1 + EVENTS + 2}

def test_audit_passes_then_names_each_breach_and_fails(migrated):
    make_overdue_bill()
    assert migrated("sweep", "--now", "2026-03-07T17:00+08:00").code == 0
    assert migrated("audit").out == "audit: 1 members, 1 bills checked, no breach\n"

    async def overdraw(core):  # the line's cached balance off by one fen
        async with core.db.transaction() as session:
            await session.execute(update(CreditLine).values(used_fen=CreditLine.used_fen + 1))

    on_database(overdraw)
    broken = migrated("audit")
    assert broken.one_line_error == "error: audit: 1 breach(es); 1 members, 1 bills checked"
    assert broken.out == "line_used (member 1): line 1: used 10001 != held 0 + unpaid 10000\n"
    assert ZHANG_WEI not in broken.out + broken.err


def test_operator_add_reads_the_password_from_stdin_and_stores_only_its_argon2_hash(migrated, monkeypatch):
    from billing.operators import log_in
    from storage.models import Operator

    assert migrated("hospital", "add", "H1", "--name", "一院").code == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("finance office 2026\n"))
    added = migrated("operator", "add", "h1-finance", "--role", "hospital", "--hospital", "H1", "--password-stdin")
    assert added.code == 0 and "operator h1-finance added (hospital)" in added.out and "/admin/login" in added.out

    async def work(core):
        async with core.db.transaction() as session:
            stored = await session.scalar(select(Operator.password_hash))
        return stored, (await log_in(core, "h1-finance", "finance office 2026")).scope

    stored, scope = on_database(work)
    assert stored.startswith("$argon2id$") and "finance office" not in stored
    assert scope.role == "hospital" and scope.hospital_id is not None


def test_operator_add_asks_twice_without_stdin_and_refuses_what_does_not_fit(migrated, monkeypatch):
    answers = iter(["first password", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert migrated("operator", "add", "wang", "--role", "operator").one_line_error == \
        "error: the two passwords differ; nothing was added"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert migrated("operator", "add", "h", "--role", "hospital", "--password-stdin").one_line_error.startswith(
        "error: a hospital account, and only that, names its hospital")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert "at least 10 characters" in migrated("operator", "add", "wang", "--role", "auditor", "--password-stdin").one_line_error
    assert migrated("operator", "add", "wang", "--role", "boss").code == 1
def test_events_lists_the_programme_events_and_queues_a_parked_one_again(migrated):
    make_overdue_bill()
    migrated("sweep", "--now", "2026-03-07T17:00+08:00")  # the sandbox insurer is not running: they fail
    listed = migrated("events")
    header, *rows = listed.out.splitlines()
    assert header.split()[:4] == ["ID", "EVENT", "STATE", "TRIES"]
    newest_first = ["member_suspended", "advance_requested", "bill_overdue", "bill_issued"]
    assert [row.split()[1:4] for row in rows] == [[name, "failing", "1"] for name in newest_first]
    assert all("ClientConnectorError" in row for row in rows) and ZHANG_WEI not in listed.out
    issued_id = int(rows[-1].split()[0])

    async def park(core):  # what a receiver's 4xx leaves (tests/bot/test_event_webhook.py)
        async with core.db.transaction() as session:
            await session.execute(update(Outbox).where(Outbox.id == issued_id)
                                  .values(status="dead", last_error="Refused: bill_issued: HTTP 400"))

    on_database(park)
    failed = migrated("events", "--failed").out.splitlines()
    assert len(failed) == 5 and failed[-1].split()[:3] == [str(issued_id), "bill_issued", "parked"]
    assert len(migrated("events", "--limit", "1").out.splitlines()) == 2
    assert migrated("events", "--retry", str(issued_id)).out.startswith("1 parked event(s) queued again")
    assert migrated("events", "--failed").out.count("parked") == 0
    assert migrated("events", "--retry", str(issued_id)).one_line_error == (
        f"error: no parked event {issued_id}: `xinyi events --failed` lists the parked ones")
    assert "--retry takes an event's ID" in migrated("events", "--retry", "first").one_line_error


def test_registry_refresh_re_rates_from_the_file_as_it_is_now(migrated, monkeypatch, tmp_path):
    registry = tmp_path / "registry.csv"
    registry.write_text(DEMO_REGISTRY.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("XINYI_REGISTRY", str(registry))
    assert migrated("registry", "refresh").one_line_error.startswith("error: this programme's line does not follow a credit score")
    monkeypatch.setenv("XINYI_POLICY", "xiamen")

    async def enrol_wu_lihua(core):  # 吴丽华, 白鹭分 620: 3,000 yuan, which 鹭岛示例银行 does not cap
        await members.enrol(core, openid=None, name="吴丽华", id_number="350200197509300157", phone="13912345678",
                            consent_version=core.policy.consent_version, commitment_version=core.policy.commitment_version,
                            institution="ludao-bank")

    on_database(enrol_wu_lihua)
    assert migrated("registry", "refresh").out == "1 members read from the registry, 0 moved to another tier\n"
    registry.write_text(registry.read_text(encoding="utf-8").replace("350200197509300157,吴丽华,350200,normal,0,620",
                                                                     "350200197509300157,吴丽华,350200,normal,0,550"),
                        encoding="utf-8")
    assert migrated("registry", "refresh").out == "1 members read from the registry, 1 moved to another tier\n"

    async def limit(core):
        async with core.db.transaction() as session:
            return await session.scalar(select(CreditLine.limit_fen))

    assert on_database(limit) == 100000
