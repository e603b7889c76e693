"""The auditor in production: read in batches of members, and run by the sweep over the
members it touched and a rolling slice of the others, a breach logged and counted."""
from __future__ import annotations

import logging
import math

from prometheus_client import REGISTRY
from sqlalchemy import text

from billing.audit import AuditReport, RollingAudit, audit_database
from billing.sweep import sweep
from helpers import billed_visit, charge, enrol, id_number_for, open_visit, pay

BEIJING = ["110105198503120012", "110105194908150027", "11010819920709006X", "110108195203040075"]


async def four_members_with_a_bill(core) -> tuple[list[int], list[str]]:
    member_ids = [await enrol(core, id_number) for id_number in BEIJING]
    bill_nos = [await billed_visit(core, id_number, 10_000) for id_number in BEIJING]
    return member_ids, bill_nos


async def corrupt(core, statement: str, **params) -> None:
    async with core.db.transaction() as session:
        await session.execute(text(statement), params)


def breaches_counted(invariant: str) -> float:
    return REGISTRY.get_sample_value("xinyi_audit_breaches_total", {"invariant": invariant}) or 0


async def test_a_breach_past_the_first_batch_is_found_and_named(make_core):
    core = await make_core()
    member_ids, bill_nos = await four_members_with_a_bill(core)
    stranger = await open_visit(core, id_number_for("19900101", 901))  # not enrolled: off credit
    await charge(core, stranger, 500)
    clean = await audit_database(core, batch_size=2)
    assert (clean.members, clean.bills, clean.breaches) == (4, 4, [])

    last = member_ids[-1]
    await corrupt(core, "UPDATE credit_lines SET used_fen = used_fen + 1 WHERE member_id = :m", m=last)
    await corrupt(core, "UPDATE bills SET paid_fen = 1 WHERE bill_no = :b", b=bill_nos[2])
    await corrupt(core, "UPDATE charges SET status = 'held' WHERE status = 'off_credit'")
    found = await audit_database(core, batch_size=2)
    assert (found.members, found.bills) == (4, 4)
    assert sorted(((b.invariant, b.member_id, b.bill_no) for b in found.breaches), key=str) == sorted([
        ("line_used", last, None),
        ("bill_paid", member_ids[2], bill_nos[2]),  # paid 1 != applied 0
        ("line_used", member_ids[2], None),  # used 10000 != unpaid 9999
        ("charge_line", None, None),  # a held charge on a visit with no line, of someone not a member
    ], key=str)
    line_breach = next(b for b in found.breaches if b.member_id == last)
    assert str(line_breach) == f"line_used (member {last}): line {line_breach.line_id}: used 10001 != held 0 + unpaid 10000"


async def test_the_sweep_audits_a_rolling_slice_until_every_member_is_checked(make_core, caplog):
    core = await make_core()
    member_ids, _ = await four_members_with_a_bill(core)
    await corrupt(core, "UPDATE credit_lines SET used_fen = used_fen + 1 WHERE member_id = :m", m=member_ids[-1])
    rolling = RollingAudit(slice_size=3)
    before = breaches_counted("line_used")
    reports = []
    for _ in range(math.ceil(len(member_ids) / rolling.slice_size)):
        reports.append(await sweep(core, audit=rolling))
    assert [(r.audited, r.breaches) for r in reports] == [(3, 0), (3, 1)]  # the second: the last member, then the first two
    assert reports[0].quiet and not reports[1].quiet  # the schedule logs a sweep that found something
    assert breaches_counted("line_used") == before + 1
    [logged] = [r for r in caplog.records if r.name == "billing.audit"]
    assert logged.levelno == logging.ERROR
    assert logged.getMessage().startswith(f"audit breach: invariant=line_used member={member_ids[-1]} bill=-: line ")


async def test_the_sweep_audits_the_members_it_touched(make_core, clock, caplog):
    core = await make_core()
    member_ids = [await enrol(core, id_number) for id_number in BEIJING]
    bill_no = await billed_visit(core, BEIJING[-1], 10_000)
    await corrupt(core, "UPDATE bills SET paid_fen = 1 WHERE bill_no = :b", b=bill_no)
    clock.advance(days=3)  # the bill is overdue: the sweep moves it, and its payer with it
    report = await sweep(core, audit=RollingAudit(slice_size=1))  # the slice is member_ids[0]
    assert (report.bills_overdue, report.audited, report.breaches) == (1, 2, 2)
    assert f"audit breach: invariant=bill_paid member={member_ids[-1]} bill={bill_no}: " in caplog.text
    assert (await sweep(core)).audited == 0  # without a RollingAudit the sweep audits nothing


async def test_a_refund_through_another_bills_payment_is_a_breach(make_core):
    core = await make_core()
    member_ids, bill_nos = await four_members_with_a_bill(core)
    await pay(core, bill_nos[0], 12_000, payment_no="PA")  # 2000 too much: refunded through PA
    await pay(core, bill_nos[1], 10_000, payment_no="PB")
    assert await audit_database(core, batch_size=1) == AuditReport(4, 4, [])
    await corrupt(core, "UPDATE refunds SET payment_id = (SELECT id FROM payments WHERE payment_no = 'PB')")
    found = await audit_database(core, batch_size=1)
    assert sorted((b.invariant, b.member_id, b.bill_no) for b in found.breaches) == [
        ("payment_balance", member_ids[0], bill_nos[0]),  # PA: applied 10000 + refunded 0 != received 12000
        ("refund_payment", member_ids[0], bill_nos[0]),
    ]
