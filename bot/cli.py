"""`xinyi`, the command line (DESIGN §4.4). A user's mistake ends with one line on stderr
and exit code 1, never a traceback."""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import sys
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Awaitable, Callable

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from tqdm import tqdm

from billing import events, outbox
from billing.audit import RollingAudit, audit_database
from billing.clock import CHINA_TIME
from billing.core import Core
from billing.errors import BillingError
from billing.hospitals import add_hospital
from billing.exports import Scope as ExportScope
from billing.operators import add_operator
from billing.rerating import rerate
from billing.reports import Figures, Scope, programme_figures, programme_start
from billing.schedule import ScheduleError, import_schedule, read_schedule
from billing.staff import add_staff
from billing.sweep import sweep
from bot.admin.dashboard import FIGURE_LABELS, STAGE_LABELS, figure_text
from bot.config import ConfigError, Settings, build_core, load_settings, session_url
from bot.export_files import EXPORTS, FORMATS, counted, write_export
from handlers.i18n import LOCALES, SOURCE_LOCALE, money, t
from storage import migrate
from storage.models import OPERATOR_ROLES

SHOWN_PROBLEMS = 20
PROGRESS_MIN_ROWS = 1000
PROGRESS_DELAY_S = 1.0

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

    stats = commands.add_parser("stats", help="the programme's figures for a range of China days [--from, --to)")
    stats.add_argument("--json", action="store_true", help="print JSON (amounts in fen, rates as fractions 0..1)")
    stats.add_argument("--from", dest="start", type=china_day, help="first day, YYYY-MM-DD (default: the programme's first)")
    stats.add_argument("--to", dest="end", type=china_day, help="the day after the last, YYYY-MM-DD (default: tomorrow)")
    stats.add_argument("--hospital", help="only this hospital's visits, bills and payments (its code)")
    stats.add_argument("--lang", choices=LOCALES, default=SOURCE_LOCALE, help="language of the text output")
    stats.set_defaults(command=with_core(stats_command))

    commands.add_parser("audit", help="check the money and status invariants of every member; exit code 1 on a breach"
                        ).set_defaults(command=with_core(audit_command))

    export = commands.add_parser("export", help="export the overdue list or the credit-report list as CSV or XLSX")
    exports = export.add_subparsers(required=True, metavar="WHAT")
    for name, description in (("overdue", "unpaid bills past due, for the insurer"),
                              ("credit-report", "members to report to the credit system, with the reason and dates")):
        what = exports.add_parser(name, help=f"{description}; personal numbers masked")
        what.add_argument("--format", choices=FORMATS, help="csv or xlsx (default: as --output ends, else csv)")
        what.add_argument("--output", type=Path, help="write to this file (default: standard output)")
        what.add_argument("--hospital", metavar="CODE", help="only this hospital's bills")
        what.add_argument("--staff", metavar="ID", type=int, action="append",
                          help="only members these community staff onboarded (repeatable)")
        what.add_argument("--from", dest="since", metavar="DATE", type=china_day,
                          help="from this day (China time), by due date or by the day the report was decided")
        what.add_argument("--to", dest="until", metavar="DATE", type=china_day, help="up to and including this day")
        what.add_argument("--lang", choices=LOCALES, default=SOURCE_LOCALE, help="the headers' language (default: zh_Hans)")
        what.add_argument("--now", type=aware_time, help="as of this ISO time with a UTC offset (default: now)")
        what.set_defaults(command=with_core(export_command), export=EXPORTS[name])

    registry = commands.add_parser("registry", help="the residents' registry (XINYI_REGISTRY)")
    registry.add_subparsers(required=True, metavar="ACTION").add_parser(
        "refresh", help="read the registry again and re-rate every member whose credit score earns another tier"
    ).set_defaults(command=with_core(registry_refresh_command))

    operator = commands.add_parser("operator", help="accounts of the operator console at /admin/")
    operator_add = operator.add_subparsers(required=True, metavar="ACTION").add_parser(
        "add", help="add a console account (asks for its password)")
    operator_add.add_argument("username")
    operator_add.add_argument("--role", required=True, choices=OPERATOR_ROLES,
                              help="operator: everything; hospital: one hospital; community: its staff's residents; "
                                   "auditor: reads everything, changes nothing")
    operator_add.add_argument("--hospital", metavar="CODE", help="role hospital: the hospital it sees")
    operator_add.add_argument("--staff", metavar="OPENID", action="append", default=[],
                              help="role community: a staff member whose residents it sees (repeat for more)")
    operator_add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    operator_add.set_defaults(command=with_core(operator_add_command))

    events_parser = commands.add_parser(
        "events", help="programme events to the insurer's system: the newest, or those failing and parked")
    events_parser.add_argument("--failed", action="store_true", help="only those failing (being retried) or parked")
    events_parser.add_argument("--retry", metavar="ID",
                               help="send a parked event again, from its first attempt (`all`: every parked one)")
    events_parser.add_argument("--limit", type=positive_count, default=events.LISTED, help=f"at most this many (default {events.LISTED})")
    events_parser.set_defaults(command=with_core(events_command))

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


def china_day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def positive_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number, 1 or more: {text!r}")
    return int(text)


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


async def registry_refresh_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    done = await rerate(core, core.registry)
    print(f"{done.checked} members read from the registry, {done.rerated} moved to another tier"
          + (f"; {done.missing} have no credit score there any more and were left as they are" if done.missing else ""))


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
    from bot.event_webhook import events_webhook  # aiohttp: only the commands that talk HTTP load it

    now = args.now or core.clock.now()
    # The programme events go where `xinyi serve` sends them; in the sandbox, to its stand-in of the insurer.
    webhook = events_webhook(settings, core.clock)
    try:
        # A one-shot sweep audits what it touched and the first slice of members; `xinyi audit` checks them all.
        if settings.sandbox:
            # The sandbox gateways live inside `xinyi serve` (their keys are made at its start): log instead.
            report = await sweep(core, now, outbox.LogSender(), audit=RollingAudit(), events=webhook)
        else:
            from bot.server import cron_services  # the WeChat and payment clients: heavy imports

            async with cron_services(core, settings) as (sender, reconcile):
                report = await sweep(core, now, sender, reconcile, audit=RollingAudit(), events=webhook)
    finally:
        if webhook is not None:
            await webhook.close()
    print(f"sweep at {now.isoformat()}: {report.reconciled} trades or refunds reconciled, "
          f"{report.bills_overdue} bills overdue, {report.bills_advanced} advanced by the insurer, "
          f"{report.interest_accrued} bills' interest accrued, {report.reminders} reminders, {report.status_changes} status changes, "
          f"outbox {report.sent} sent, {report.failed} failed, events {report.events_sent} sent, "
          f"{report.events_failed} failed, {report.audited} members audited, {report.breaches} breaches")


async def audit_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    report = await audit_database(core)
    checked = f"{report.members} members, {report.bills} bills checked"
    for breach in report.breaches:  # they name members by id: no personal data
        print(breach)
    if report.breaches:
        raise UserError(f"audit: {len(report.breaches)} breach(es); {checked}")
    print(f"audit: {checked}, no breach")


async def stats_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    end = args.end or core.clock.now().astimezone(CHINA_TIME).date() + timedelta(days=1)
    start = args.start or await programme_start(core, end)
    if start >= end:
        raise UserError(f"--from {start} must be before --to {end}")
    figures = await programme_figures(core, Scope(start, end, hospital=args.hospital))
    if args.json:
        print(json.dumps(figures.as_json(), ensure_ascii=False, indent=2))
    else:
        print_figures(figures, args.lang)


def print_figures(figures: Figures, locale: str) -> None:
    scope = figures.scope
    print(t("{start} 至 {end}（不含）", locale, start=scope.start.isoformat(), end=scope.end.isoformat())
          + (f" · {scope.hospital}" if scope.hospital else ""))
    for name, label in FIGURE_LABELS.items():
        print(f"  {t(label, locale)}: {figure_text(figures, name, locale)}")
    self_enrolled = t("自行开通", locale)
    for onboarder in figures.onboarders:
        who = onboarder.name if onboarder.staff_id is not None else self_enrolled
        print(f"  · {who} ({onboarder.scene or '—'}): {onboarder.enrolled:,}")
    print(t("逾期阶梯", locale))
    for stage, count in figures.ladder.items():
        print(f"  {t(STAGE_LABELS[stage], locale)}: {count:,}")
    on_call = figures.on_call
    if on_call is not None:
        print(t("会员状态", locale) + ": " + ", ".join(f"{status} {count}" for status, count in on_call.members.items()))
        for status, totals in on_call.bills.items():
            print(t("账单 {status}：{count} 张，未付 {unpaid}", locale, status=status, count=totals.count,
                    unpaid=money(totals.unpaid_fen, locale)))
        print(t("消息：待发送 {pending}，发送失败 {dead}", locale, pending=on_call.outbox_pending, dead=on_call.outbox_dead))
        print(t("退款：待退 {count} 笔，共 {amount}", locale, count=on_call.refunds_pending,
                amount=money(on_call.refunds_pending_fen, locale)))


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("password: ")
    if getpass.getpass("again: ") != password:
        raise UserError("the two passwords differ; nothing was added")
    return password


async def operator_add_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    password = read_password(args.password_stdin)
    await add_operator(core, args.username, password, args.role, hospital=args.hospital, staff_openids=tuple(args.staff))
    print(f"operator {args.username.strip()} added ({args.role}): log in at {settings.public_url}/admin/login")


async def events_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    if args.retry is not None:
        if args.retry != "all" and not args.retry.isdigit():
            raise UserError(f"--retry takes an event's ID as `xinyi events` lists it, or all: {args.retry!r}")
        count = await events.retry_parked(core, None if args.retry == "all" else int(args.retry))
        if not count:
            raise UserError(f"no parked event {args.retry}: `xinyi events --failed` lists the parked ones")
        print(f"{count} parked event(s) queued again; `xinyi serve` sends them within seconds")
        return
    if not settings.events_url and not settings.sandbox:
        print("XINYI_EVENTS_URL is not set: events are kept here, not sent", file=sys.stderr)
    print(f"{'ID':>8}  {'EVENT':<18} {'STATE':<8} {'TRIES':>5}  {'OCCURRED AT':<25} {'NEXT TRY':<25} LAST ERROR")
    for e in await events.list_events(core, failed=args.failed, limit=args.limit):
        next_try = e.next_attempt_at.isoformat() if e.next_attempt_at else "-"
        print(f"{e.id:>8}  {e.event:<18} {e.state:<8} {e.attempts:>5}  {e.occurred_at:<25} {next_try:<25} {e.last_error or ''}")


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


async def export_command(core: Core, settings: Settings, args: argparse.Namespace) -> None:
    fmt = args.format or ("xlsx" if args.output and args.output.suffix.lower() == ".xlsx" else "csv")
    if args.since and args.until and args.since > args.until:
        raise UserError(f"--from {args.since} is after --to {args.until}")
    scope = ExportScope(
        hospital=args.hospital,
        staff_ids=frozenset(args.staff) if args.staff is not None else None,
        since=datetime.combine(args.since, time(), CHINA_TIME) if args.since else None,
        until=datetime.combine(args.until + timedelta(days=1), time(), CHINA_TIME) if args.until else None,
    )
    now = args.now or core.clock.now()
    target = args.output.open("wb") if args.output else sys.stdout.buffer
    # Shown only when the export takes a while and stderr is a terminal.
    progress = tqdm(desc=args.export.name, unit="row", file=sys.stderr, delay=PROGRESS_DELAY_S, disable=None)
    rows = 0

    def tick(n: int) -> None:
        nonlocal rows
        rows += n
        progress.update(n)

    try:
        with progress:
            await write_export(args.export, fmt, counted(args.export.rows(core, now, scope), tick), args.lang, target)
    except BaseException:
        if args.output:
            target.close()
            args.output.unlink()  # no half-written file is left to be taken for a whole one
        raise
    if args.output:
        target.close()
        print(f"{rows} {'overdue bills' if args.export.name == 'overdue' else 'credit reports'} written to "
              f"{args.output}", file=sys.stderr)
    else:
        target.flush()
