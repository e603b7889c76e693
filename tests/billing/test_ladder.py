"""The overdue ladder as a pure calculator: facts and `now` in, a stage out. Table-driven,
no database (the worked scenarios run the applicator)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from billing.ladder import Decision, MemberFacts, bill_stage, decide
from billing.policy import load_policy

BEIJING, NANTONG, XIAMEN = (load_policy(name) for name in ("beijing-shijingshan", "nantong", "xiamen"))
DUE = datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


SELF_REPAIRING = replace(NANTONG, repair=replace(NANTONG.repair, automatic=True))


def facts(status="active", days_overdue=None, overdue_count=0, days_since_advance=None, over_limit=False, repaired=False,
          repair_ready=False, reminders_unheeded=0, reported=()):
    return MemberFacts(status, days_overdue, overdue_count, days_since_advance, over_limit, repaired,
                       repair_ready=repair_ready, reminders_unheeded=reminders_unheeded, reported=frozenset(reported))


@pytest.mark.parametrize("policy, paid_fen, now, stage", [
    (BEIJING, 0, DUE - HOUR, "open"),
    (BEIJING, 0, DUE, "open"),  # due means up to and including the due time
    (BEIJING, 0, DUE + timedelta(seconds=1), "advanced"),  # Beijing's insurer advances at once
    (BEIJING, 999, DUE + 40 * 24 * HOUR, "advanced"),  # a partial payment leaves it unpaid
    (BEIJING, 1000, DUE + 40 * 24 * HOUR, "paid"),
    (NANTONG, 0, DUE + 400 * 24 * HOUR, "overdue"),  # no advance in Nantong, ever
    (replace(NANTONG, advance_after_days=3), 0, DUE + 3 * 24 * HOUR - HOUR, "overdue"),
    (replace(NANTONG, advance_after_days=3), 0, DUE + 3 * 24 * HOUR, "advanced"),
    (XIAMEN, 1000, DUE - HOUR, "paid"),
])
def test_bill_stage(policy, paid_fen, now, stage):
    assert bill_stage(policy, self_pay_fen=1000, paid_fen=paid_fen, due_at=DUE, now=now) == stage


def decided(policy, member_facts) -> tuple[str, str] | None:
    decision = decide(policy, member_facts)
    return None if decision is None else (decision.to, decision.reason)


@pytest.mark.parametrize("policy, member_facts, expected", [
    # Beijing: any overdue suspends; the 6th revokes; 90 days after the advance blacklists.
    (BEIJING, facts(), None),
    (BEIJING, facts(days_overdue=0, overdue_count=1, days_since_advance=0), ("suspended", "ladder:days_overdue>=0")),
    (BEIJING, facts(days_overdue=3, overdue_count=5, days_since_advance=3), ("suspended", "ladder:days_overdue>=0")),
    (BEIJING, facts(days_overdue=0, overdue_count=6, days_since_advance=0), ("revoked", "ladder:overdue_count>=6")),
    (BEIJING, facts("suspended", days_overdue=0, overdue_count=6, days_since_advance=0), ("revoked", "ladder:overdue_count>=6")),
    (BEIJING, facts(overdue_count=6), ("revoked", "ladder:overdue_count>=6")),  # six overdues, even if all repaid
    (BEIJING, facts("suspended", days_overdue=89, overdue_count=1, days_since_advance=89), None),
    (BEIJING, facts("suspended", days_overdue=90, overdue_count=1, days_since_advance=90),
     ("blacklisted", "ladder:days_since_advance>=90")),
    (BEIJING, facts("revoked", days_overdue=90, overdue_count=6, days_since_advance=90),
     ("blacklisted", "ladder:days_since_advance>=90")),
    (BEIJING, facts("suspended", overdue_count=1), ("active", "repaid")),
    (BEIJING, facts("revoked", overdue_count=6), None),  # revocation never lifts by itself
    (BEIJING, facts("revoked", overdue_count=1), None),
    (BEIJING, facts("blacklisted", overdue_count=1), None),
    (BEIJING, facts("prospect", days_overdue=5, overdue_count=1), None),  # outside the ladder
    (BEIJING, facts("cancelled", days_overdue=5, overdue_count=1), None),
    # Nantong: 30 days overdue suspends; lifting needs credit repair.
    (NANTONG, facts(days_overdue=29, overdue_count=1), None),
    (NANTONG, facts(days_overdue=30, overdue_count=1), ("suspended", "ladder:days_overdue>=30")),
    (NANTONG, facts("suspended", overdue_count=1), None),
    (NANTONG, facts("suspended", overdue_count=1, repaired=True), ("active", "credit_repair")),
    (NANTONG, facts("suspended", days_overdue=31, overdue_count=1, repaired=True, reported={"personal_credit_file"}), None),
    # Suspended by an operator before the 30 days, and reported once the rule holds: no move.
    (NANTONG, facts("suspended", days_overdue=30, overdue_count=1), ("suspended", "ladder:days_overdue>=30")),
    (NANTONG, facts("suspended", overdue_count=1, repair_ready=True), None),  # not by itself: the member asks
    # A repair the policy completes by itself: once nothing is missing, the sweep lifts the suspension.
    (SELF_REPAIRING, facts("suspended", overdue_count=1), None),
    (SELF_REPAIRING, facts("suspended", overdue_count=1, repair_ready=True), ("active", "credit_repair")),
    # Xiamen: overdue beyond the period or over the limit suspends; reminders unheeded report to the score,
    # once a suspension.
    (XIAMEN, facts(days_overdue=0, overdue_count=1), ("suspended", "ladder:days_overdue>=0")),
    (XIAMEN, facts(days_overdue=0, overdue_count=2), ("suspended", "ladder:days_overdue>=0")),
    (XIAMEN, facts("suspended", days_overdue=7, reminders_unheeded=1), None),
    (XIAMEN, facts("suspended", days_overdue=14, reminders_unheeded=2), ("suspended", "ladder:reminders_unheeded>=2")),
    (XIAMEN, facts("suspended", days_overdue=44, reminders_unheeded=2, reported={"credit_score_lowered"}), None),
    (XIAMEN, facts(days_overdue=14, reminders_unheeded=2), ("suspended", "ladder:reminders_unheeded>=2")),
    (XIAMEN, facts(over_limit=True), ("suspended", "ladder:over_limit")),
    (XIAMEN, facts(overdue_count=2), None),  # repaid, not over: nothing holds
    (XIAMEN, facts("suspended", overdue_count=2), ("active", "repaid")),
    (XIAMEN, facts("suspended", over_limit=True), None),
])
def test_decide(policy, member_facts, expected):
    assert decided(policy, member_facts) == expected


def test_the_rule_that_decided_is_kept_with_its_report():
    decision = decide(BEIJING, facts("suspended", days_overdue=90, overdue_count=1, days_since_advance=90))
    assert decision.rule.report == "central_bank_credit_system"
    nantong = decide(NANTONG, facts(days_overdue=30, overdue_count=1))
    assert nantong.rule.record_malicious_debt and nantong.rule.report == "personal_credit_file"
    assert Decision("active", None).reason == "repaid"
