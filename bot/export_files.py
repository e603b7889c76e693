"""The exports as files a finance office opens: columns with headers in the reader's language,
CSV (UTF-8 with a BOM, which Excel in China needs to read Chinese right) and XLSX (openpyxl's
write-only mode). Both are written as the rows come, so memory stays flat: CSV in chunks of
bytes, XLSX row by row into openpyxl's temporary sheet file, then zipped on a thread.

Amounts are integer fen, with the unpaid amount in yuan beside them for people; times are
China time (UTC+8), which is what the hospitals and the insurer read.
"""
from __future__ import annotations

import asyncio
import csv
import io
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, AsyncIterator, BinaryIO, Callable
from urllib.parse import quote

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell

from billing.clock import CHINA_TIME
from billing.core import Core
from billing.exports import Scope, credit_reports, overdue_bills
from billing.money import fen_to_yuan
from handlers.i18n import N_, t

FORMATS = ("csv", "xlsx")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
CHUNK_BYTES = 64 * 1024
SLICE_S = 0.005  # the longest the writers keep the event loop before handing it back
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet may run as a formula (OWASP CSV injection)
TIME_FORMAT = "%Y-%m-%d %H:%M"
XLSX_TIME_FORMAT = "yyyy-mm-dd hh:mm"


@dataclass(frozen=True)
class Column:
    header: str  # a message, marked with N_ and translated for the reader
    value: Callable[[Any], object]


@dataclass(frozen=True)
class Export:
    name: str  # as the command line and URLs spell it
    title: str  # a message: the sheet's name and the file's
    columns: tuple[Column, ...]
    rows: Callable[[Core, datetime, Scope], AsyncIterator[Any]]

    def headers(self, locale: str) -> list[str]:
        return [t(column.header, locale) for column in self.columns]

    def disposition(self, fmt: str, now: datetime, locale: str) -> str:
        """Content-Disposition: the file's name in the reader's language (RFC 5987), and in
        ASCII for clients that know no better."""
        stamp = f"{now.astimezone(CHINA_TIME):%Y%m%d-%H%M}.{fmt}"
        return (f'attachment; filename="{self.name}-{stamp}"; '
                f"filename*=UTF-8''{quote(t(self.title, locale) + '-' + stamp, safe='')}")


def _yuan(fen: int | None) -> Decimal | None:
    return None if fen is None else fen_to_yuan(fen)


OVERDUE = Export("overdue", N_("逾期账单"), (
    Column(N_("账单号"), attrgetter("bill_no")),
    Column(N_("医院代码"), attrgetter("hospital_code")),
    Column(N_("医院"), attrgetter("hospital_name")),
    Column(N_("姓名"), attrgetter("member_name")),
    Column(N_("身份证号（脱敏）"), attrgetter("id_number_masked")),
    Column(N_("手机号（脱敏）"), attrgetter("phone_masked")),
    Column(N_("会员状态"), attrgetter("member_status")),
    Column(N_("自付金额（分）"), attrgetter("self_pay_fen")),
    Column(N_("已付金额（分）"), attrgetter("paid_fen")),
    Column(N_("未付金额（分）"), attrgetter("unpaid_fen")),
    Column(N_("未付金额（元）"), lambda row: _yuan(row.unpaid_fen)),
    Column(N_("到期时间"), attrgetter("due_at")),
    Column(N_("逾期天数"), attrgetter("days_overdue")),
    Column(N_("账单阶段"), attrgetter("bill_status")),
    Column(N_("保险先行赔付应于"), attrgetter("advance_due_at")),
    Column(N_("保险先行赔付申请时间"), attrgetter("advanced_at")),
    Column(N_("利息（分）"), attrgetter("interest_fen")),  # past the interest-free period, up to the export's time
    Column(N_("已付利息（分）"), attrgetter("interest_paid_fen")),
), overdue_bills)

CREDIT_REPORT = Export("credit-report", N_("征信报送名单"), (
    Column(N_("姓名"), attrgetter("member_name")),
    Column(N_("身份证号（脱敏）"), attrgetter("id_number_masked")),
    Column(N_("手机号（脱敏）"), attrgetter("phone_masked")),
    Column(N_("会员状态"), attrgetter("member_status")),
    Column(N_("报送事由"), attrgetter("report")),
    Column(N_("逾期阶段"), attrgetter("stage")),
    Column(N_("触发规则"), attrgetter("ladder_reason")),
    Column(N_("进入该阶段时间"), attrgetter("stage_since")),
    Column(N_("决定报送时间"), attrgetter("decided_at")),
    Column(N_("发送状态"), attrgetter("delivery")),
    Column(N_("发送时间"), attrgetter("sent_at")),
    Column(N_("未付账单数"), attrgetter("unpaid_bills")),
    Column(N_("未付金额（分）"), attrgetter("unpaid_fen")),
    Column(N_("未付金额（元）"), lambda row: _yuan(row.unpaid_fen)),
    Column(N_("最早到期时间"), attrgetter("oldest_due_at")),
    Column(N_("逾期天数"), attrgetter("days_overdue")),
), credit_reports)

EXPORTS = {export.name: export for export in (OVERDUE, CREDIT_REPORT)}


def neutralised(text: str) -> str:
    """Text a spreadsheet shows and never runs: a leading quote before what could start a formula."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(CHINA_TIME).strftime(TIME_FORMAT)
    if isinstance(value, str):
        return neutralised(value)
    return value


async def counted(rows: AsyncIterator[Any], tick: Callable[[int], object]) -> AsyncIterator[Any]:
    """`rows`, calling `tick(1)` after each (a progress bar's update, a job's counter)."""
    async for row in rows:
        yield row
        tick(1)


async def in_slices(rows: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`rows`, handing the event loop back whenever SLICE_S has gone by since it last did: a
    batch read from the database is quick, writing it out (XLSX above all) may not be."""
    handed_back = time.perf_counter()
    async for row in rows:
        yield row
        if time.perf_counter() - handed_back > SLICE_S:
            await asyncio.sleep(0)
            handed_back = time.perf_counter()


async def csv_chunks(export: Export, rows: AsyncIterator[Any], locale: str) -> AsyncIterator[bytes]:
    """The CSV file in pieces of about CHUNK_BYTES, the first with the BOM and the headers."""
    buffer = io.StringIO()
    buffer.write("\ufeff")
    writer = csv.writer(buffer)
    writer.writerow(export.headers(locale))
    async for row in in_slices(rows):
        writer.writerow([_csv_cell(column.value(row)) for column in export.columns])
        if buffer.tell() >= CHUNK_BYTES:
            yield _taken(buffer)
    yield _taken(buffer)


def _taken(buffer: io.StringIO) -> bytes:
    chunk = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return chunk


def _xlsx_cell(sheet, value: object) -> object:
    if isinstance(value, datetime):
        cell = WriteOnlyCell(sheet, value.astimezone(CHINA_TIME).replace(tzinfo=None))  # Excel has no time zones
        cell.number_format = XLSX_TIME_FORMAT
        return cell
    if isinstance(value, Decimal):
        cell = WriteOnlyCell(sheet, value)
        cell.number_format = "0.00"
        return cell
    if isinstance(value, str):
        return neutralised(value)
    return value


async def write_xlsx(export: Export, rows: AsyncIterator[Any], locale: str, target: BinaryIO) -> None:
    """Rows go to openpyxl's temporary sheet file as they come; the workbook is zipped into
    `target` on a thread, which for a large export takes seconds the loop must not wait."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(t(export.title, locale))
    sheet.freeze_panes = "A2"
    sheet.append(export.headers(locale))
    try:
        async for row in in_slices(rows):
            sheet.append([_xlsx_cell(sheet, column.value(row)) for column in export.columns])
    except BaseException:
        # openpyxl removes the sheet's temporary file only when it saves the workbook.
        sheet.close()
        sheet._writer.cleanup()
        raise
    saving = asyncio.ensure_future(asyncio.to_thread(workbook.save, target))
    try:
        await asyncio.shield(saving)
    except asyncio.CancelledError:
        await saving  # a thread cannot be stopped: the caller may close `target` once it is done with it
        raise


async def write_export(export: Export, fmt: str, rows: AsyncIterator[Any], locale: str, target: BinaryIO) -> None:
    if fmt == "csv":
        async for chunk in csv_chunks(export, rows, locale):
            target.write(chunk)
    else:
        await write_xlsx(export, rows, locale, target)

