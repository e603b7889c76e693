"""`xinyi`, the command line (DESIGN §4.4). A user's mistake ends with one line on stderr
and exit code 1, never a traceback."""
from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from billing import outbox
from billing.audit import RollingAudit, audit_database
from billing.core import Core
from billing.errors import BillingError
from billing.hospitals import add_hospital
from billing.money import fen_to_yuan
from billing.reports import overdue_bills, programme_stats
from billing.schedule import ScheduleError, import_schedule, read_schedule
from billing.staff import add_staff
from billing.sweep import sweep
from bot.config import ConfigError, Settings, build_core, load_settings, session_url
from storage import migrate

SHOWN_PROBLEMS = 20
PROGRESS_MIN_ROWS = 1000
OVERDUE_COLUMNS = ("bill_no", "member_name", "id_number_masked", "member_status", "unpaid_fen", "due_at",
                   "days_overdue", "bill_status")

CoreCommand = Callable[[Core, Settings, argparse.Namespace], Awaitable[None]]


class UserError(Exception):
    """Bad input from the person at the terminal: printed as one line, exit code 1."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(1, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.INFO if args.command is run_migrate else logging.WARNING)
    try:
        args.command(load_settings(), args)
    except ScheduleError as exc:
        for problem in exc.problems[:SHOWN_PROBLEMS]:
            print(problem, file=sys.stderr)
        hidden = len(exc.problems) - SHOWN_PROBLEMS
        print(f"error: {exc.message}" + (f" ({hidden} more not shown)" if hidden > 0 else ""), file=sys.stderr)
        return 1
    except (UserError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BillingError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"error: migration: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"error: database: {exc.orig}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be written, a database server that cannot be reached
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="xinyi", description="信医: credit healthcare (treat first, pay later) on WeChat")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the web server with its background jobs")
    serve.add_argument("--workers", type=positive_int, metavar="N",
                       help="N worker processes on the port, under gunicorn (PostgreSQL only above 1)")
    serve.set_defaults(command=run_serve)

    commands.add_parser("migrate", help="create or upgrade the database schema").set_defaults(command=run_migrate)

    hospital = commands.add_parser("hospital", help="hospitals of the programme")
    hospital_add = hospital.add_subparsers(required=True, metavar="ACTION").add_parser("add", help="register a hospital")
    hospital_add.add_argument("code", help="the code the hospital signs its API requests with (X-Hospital)")
    hospital_add.add_argument("--name", required=True)
    hospital_add.add_argument("--secret", help="its API secret (default: generated)")
    hospital_add.set_defaults(command=with_core(hospital_add_command))

    schedule = commands.add_parser("schedule", help="doctors' schedules")
    schedule_import = schedule.add_subparsers(required=True, metavar="ACTION").add_parser(
        "import", help="import slots from a CSV file: department,doctor,date,start,end,capacity,fee_fen"
    )
    schedule_import.add_argument("code", help="hospital code")
    schedule_import.add_argument("file", type=Path)
    schedule_import.set_defaults(command=with_core(schedule_import_command))

    staff = commands.add_parser("staff", help="staff who onboard residents")
    staff_add = staff.add_subparsers(required=True, metavar="ACTION").add_parser("add", help="register a staff member")
    staff_add.add_argument("openid", help="their WeChat openid for this official account")
    staff_add.add_argument("--name", required=True)
    staff_add.set_defaults(command=with_core(staff_add_command))

    sweep_parser = commands.add_parser("sweep", help="bills past due, reminders, the overdue ladder and the outbox, once")
    sweep_parser.add_argument("--now", type=aware_time, help="run as of this ISO time with a UTC offset (default: now)")
    sweep_parser.set_defaults(command=with_core(sweep_command))

    commands.add_parser("stats", help="members, bills, outbox and refunds in figures").set_defaults(
        command=with_core(stats_command)
    )

    commands.add_parser("audit", help="check the money and status invariants of every member; exit code 1 on a breach"
                        ).set_defaults(command=with_core(audit_command))

    export = commands.add_parser("export", help="export data as CSV")
    export_overdue = export.add_subparsers(required=True, metavar="WHAT").add_parser(
        "overdue", help="unpaid bills past due, the payer's ID number masked"
    )
    export_overdue.add_argument("--output", type=Path, help="write to this file (default: standard output)")
    export_overdue.add_argument("--now", type=aware_time, help="as of this ISO time with a UTC offset (default: now)")
    export_overdue.set_defaults(command=with_core(export_overdue_command))

    menu = commands.add_parser("menu", help="the official account's custom menu")
    menu.add_subparsers(required=True, metavar="ACTION").add_parser(
        "push", help="replace the account's menu with xinyi's (3 buttons, up to 5 under each)"
    ).set_defaults(command=with_core(menu_push_command))
    return parser


def positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 64):
        raise argparse.ArgumentTypeError(f"a whole number from 1 to 64: {text!r}")
    return int(text)


def aware_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date and time: {text!r}") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. {text}+08:00")
    return value.astimezone(timezone.utc)


def masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def require_schema(url: str) -> None:
    current, head = await migrate.current_revision(url), migrate.head_revision()
    if current is None:
        raise UserError(f"{masked(url)} has no xinyi tables: run `xinyi migrate` first")
    if current != head:
        raise UserError(f"{masked(url)} is at schema revision {current}, this xinyi needs {head}: run `xinyi migrate` first")


def with_core(command: CoreCommand) -> Callable[[Settings, argparse.Namespace], None]:
    """Runs an async command on a Core over a migrated database, and closes it after."""

    async def run(settings: Settings, args: argparse.Namespace) -> None:
        await require_schema(session_url(settings))
        core = build_core(settings)
        try:
            await command(core, settings, args)
        finally:
            await core.db.close()

    return lambda settings, args: asyncio.run(run(settings, args))


def run_serve(settings: Settings, args: argparse.Namespace) -> None:
    if args.workers is not None and args.workers > 1:
        if settings.sandbox:
            raise UserError("--workers above 1 needs a real deployment: the sandbox's gateways live in its one process")
        if settings.database_url.startswith("sqlite"):
            raise UserError("--workers above 1 needs PostgreSQL (XINYI_DATABASE_URL=postgresql+asyncpg://...): "
                            "SQLite has one writer; run one worker on it")
    if not settings.sandbox:  # the sandbox migrates its own embedded database at start
        asyncio.run(require_schema(session_url(settings)))
    from bot import server  # the server's imports are heavy; no other command needs them

    if args.workers is None:
        server.run(settings)
    else:
        server.run_workers(settings, args.workers)


def run_migrate(settings: Settings, args: argparse.Namespace) -> None:
    revision = asyncio.run(migrate.upgrade(session_url(settings)))
    print(f"{masked(session_url(settings))} is at schema revision {revision} (the latest)")


async def hospital_add_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    secret = await add_hospital(core, args.code, args.name, args.secret)
    print(f"hospital {args.code.strip()} added: {args.name.strip()}")
    print(f"api secret: {secret}")
    print("Store the API secret now, somewhere safe: xinyi will not show it again.", file=sys.stderr)


async def schedule_import_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    rows = read_schedule(args.file)
    progress = tqdm(rows, desc="slots", unit="row", file=sys.stderr, disable=len(rows) < PROGRESS_MIN_ROWS)
    with progress:
        result = await import_schedule(core, args.code, progress, source=str(args.file))
    print(f"{args.file} -> {args.code}: {result.added} slots added, {result.updated} updated, {result.unchanged} unchanged")


async def staff_add_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    staff_id = await add_staff(core, args.openid, args.name)
    print(f"staff {staff_id} added: {args.name.strip()} ({args.openid.strip()})")


async def sweep_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    now = args.now or core.clock.now()
    # A one-shot sweep audits what it touched and the first slice of members; `xinyi audit` checks them all.
    if settings.sandbox:
        # The sandbox gateways live inside `xinyi serve` (their keys are made at its start): log instead.
        report = await sweep(core, now, outbox.LogSender(), audit=RollingAudit())
    else:
        from bot.server import cron_services  # the WeChat and payment clients: heavy imports

        async with cron_services(core, settings) as (sender, reconcile):
            report = await sweep(core, now, sender, reconcile, audit=RollingAudit())
    print(f"sweep at {now.isoformat()}: {report.reconciled} trades or refunds reconciled, "
          f"{report.bills_overdue} bills overdue, {report.bills_advanced} advanced by the insurer, "
          f"{report.reminders} reminders, {report.status_changes} status changes, "
          f"outbox {report.sent} sent, {report.failed} failed, {report.audited} members audited, {report.breaches} breaches")


async def audit_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    report = await audit_database(core)
    checked = f"{report.members} members, {report.bills} bills checked"
    for breach in report.breaches:  # they name members by id: no personal data
        print(breach)
    if report.breaches:
        raise UserError(f"audit: {len(report.breaches)} breach(es); {checked}")
    print(f"audit: {checked}, no breach")


async def stats_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    stats = await programme_stats(core.db)
    print("members by status")
    for status, count in stats.members.items():
        print(f"  {status:<12} {count:>10}")
    print(f"bills by status  {'count':>10} {'self-pay yuan':>16} {'unpaid yuan':>16}")
    for status, totals in stats.bills.items():
        print(f"  {status:<12} {totals.count:>12} {fen_to_yuan(totals.self_pay_fen):>16} {fen_to_yuan(totals.unpaid_fen):>16}")
    print(f"outbox: {stats.outbox_pending} pending, {stats.outbox_dead} dead")
    print(f"refunds: {stats.refunds_pending} pending, {fen_to_yuan(stats.refunds_pending_fen)} yuan")


async def menu_push_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    from bot.wechat_api import WeChatAccount, WeChatApiError  # aiohttp: only the commands that talk HTTP load it
    from bot.wechat_menu import push_menu

    account = WeChatAccount.from_settings(settings)
    try:
        menu = await push_menu(core, account)
    except (WeChatApiError, asyncio.TimeoutError) as exc:
        raise UserError(f"WeChat did not take the menu: {exc or 'timed out'}") from None
    print(f"menu pushed to {account.appid}: " + " | ".join(
        f"{button['name']} ({', '.join(sub['name'] for sub in button['sub_button'])})" for button in menu["button"]))


async def export_overdue_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    now = args.now or core.clock.now()
    # utf-8-sig: spreadsheet programs then read the Chinese names right.
    target = args.output.open("w", encoding="utf-8-sig", newline="") if args.output else sys.stdout
    try:
        writer = csv.writer(target)
        writer.writerow(OVERDUE_COLUMNS)
        count = 0
        async for row in overdue_bills(core, now):
            writer.writerow((row.bill_no, row.member_name, row.id_number_masked, row.member_status, row.unpaid_fen,
                             row.due_at.isoformat(), row.days_overdue, row.bill_status))
            count += 1
    finally:
        if args.output:
            target.close()
    if args.output:
        print(f"{count} overdue bills written to {args.output}", file=sys.stderr)
