"""What the billing core counts, for `/metrics` (Prometheus, the process's default registry).
Counted after the commit that made it true: a rolled-back transaction counts nothing."""
from __future__ import annotations

from prometheus_client import Counter, Histogram

APPLIED = Counter("xinyi_requests_applied", "Hospital requests under an idempotency key (charges, visits, "
                  "checkouts, payments, cancels): applied the first time, or their first answer replayed",
                  ["kind", "outcome"])
NOTICES = Counter("xinyi_payment_notices", "Gateway payment notices and query answers settled: applied, or a replay",
                  ["channel", "outcome"])
SWEEP_SECONDS = Histogram("xinyi_sweep_duration_seconds", "One sweep: bills past due, reminders, the overdue ladder",
                          buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
SWEEP_MOVES = Counter("xinyi_sweep_moves", "What sweeps moved or queued", ["move"])
BREACHES = Counter("xinyi_audit_breaches", "Invariant breaches the auditor found (again each time a standing one is "
                   "checked: alert on any increase)", ["invariant"])
