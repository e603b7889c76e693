"""`xinyi` in-process on a fresh SQLite file: outputs, database effects, and one-line
errors with exit code 1 for a user's mistakes."""
from __future__ import annotations

import asyncio
import csv
import io
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from sqlalchemy import func, select, update

from billing import members, visits
from billing.clock import FixedClock
from billing.hospitals import add_hospital, hospital_secret
from bot.cli import main
from bot.config import build_core, load_settings
from storage import migrate
from storage.models import CreditLine, Hospital, Outbox, Slot, Staff

START = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
ZHANG_WEI = "110105198503120012"  # in the demo registry
HEADER = "department,doctor,date,start,end,capacity,fee_fen\n"


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


# By the sweep below: enrolled, bill issued, bill overdue, advanced by the insurer, the 48 h reminder, suspended.
MESSAGES = 6


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
        "sweep at 2026-03-07T09:00:00+00:00: 0 trades or refunds reconciled, 1 bills overdue, 1 advanced by the insurer, 1 reminders, 1 status changes, "
        f"outbox {MESSAGES} sent, 0 failed, 1 members audited, 0 breaches\n"
    )
    assert on_database(_outbox_by_status) == {"sent": MESSAGES}

    stats = migrated("stats").out.splitlines()
    assert "  active                0" in stats and "  suspended             1" in stats
    assert "  advanced                1           100.00           100.00" in stats
    assert stats[-2:] == ["outbox: 0 pending, 0 dead", "refunds: 0 pending, 0.00 yuan"]

    expected = [
        ["bill_no", "member_name", "id_number_masked", "member_status", "unpaid_fen", "due_at", "days_overdue", "bill_status"],
        [bill_no, "张伟", "110105********0012", "suspended", "10000", "2026-03-04T09:00:00+00:00", "3", "advanced"],
    ]
    exported = migrated("export", "overdue", "--now", "2026-03-07T17:00+08:00")
    assert list(csv.reader(io.StringIO(exported.out))) == expected
    assert ZHANG_WEI not in exported.out

    target = tmp_path / "overdue.csv"
    written = migrated("export", "overdue", "--now", "2026-03-07T17:00+08:00", "--output", str(target))
    assert (written.code, written.out, written.err) == (0, "", f"1 overdue bills written to {target}\n")
    with target.open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle)) == expected
    assert list(csv.reader(io.StringIO(migrated("export", "overdue", "--now", "2026-03-04T08:59Z").out))) == expected[:1]


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
    # The insurer's two notices go to the operator channel; the four for the member need WeChat,
    # which is down: they stay queued for the next run, nothing is dropped.
    assert swept.code == 0 and "outbox 2 sent, 4 failed" in swept.out
    assert on_database(_outbox_by_status) == {"sent": 2, "pending": MESSAGES - 2}

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
