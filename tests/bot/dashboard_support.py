"""Figures for the dashboard tests, as `billing.reports.programme_figures` returns them."""
from __future__ import annotations

from datetime import date, timedelta

from billing.reports import LADDER_STAGES, BillTotals, Day, Figures, OnCall, Onboarder, Scope
from storage.models import MEMBER_STATUSES

HOSPITALS = [("H1", "首钢医院"), ("H2", '石景山<b>医院</b> & "分院"')]


def two_weeks(hospital: str | None = None) -> Figures:
    scope = Scope(date(2026, 3, 2), date(2026, 3, 16), hospital=hospital)
    days = [Day(scope.start + timedelta(days=n), enrolled=(7 * n) % 11 + 1, credit_fen=12345 * (n + 1),
                repaid_fen=9876 * n) for n in range(14)]
    return Figures(
        scope=scope, enrolled=sum(d.enrolled for d in days),
        onboarders=[Onboarder(1, "刘社工<script>", "staff:1", 40), Onboarder(None, "", None, 29)],
        visits_on_credit=180, patients_served=111, patients_repeat=90, repeat_rate=90 / 111,
        bills_issued=175, credit_fen=sum(d.credit_fen for d in days), repaid_fen=sum(d.repaid_fen for d in days),
        overdue_bills=21, overdue_fen=250000, overdue_unpaid_fen=120050, overdue_rate=21 / 175,
        advanced_bills=12, advanced_fen=160000, recovered_fen=55000, suspended=9, revoked=2, blacklisted=1,
        days=days, ladder=dict(zip(LADDER_STAGES, (175, 21, 12, 9, 2, 1))),
        on_call=None if hospital else OnCall(
            members=dict.fromkeys(MEMBER_STATUSES, 3), bills=dict.fromkeys(("open", "overdue", "advanced"), BillTotals(4, 500, 100)),
            outbox_pending=2, outbox_dead=1, refunds_pending=1, refunds_pending_fen=200),
    )
