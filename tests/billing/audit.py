"""The auditor for tests: `await audit(core)` raises AssertionError listing each broken
invariant (billing.audit does the work). Import it as `from audit import audit` (pytest
puts this folder on sys.path).
"""
from __future__ import annotations

from billing.audit import audit_database
from billing.core import Core

MAX_REPORTED = 20
# Tests have a handful of members: batches this small make every audit also prove that
# the batched read sees each member's rows together.
TEST_BATCH = 4


async def audit(core: Core, *, swept: bool = False) -> None:
    """Check every invariant of the money and status tables.

    swept: a sweep ran at `core.clock.now()` and nothing since, so every unpaid bill is at
        the stage `bill_stage` gives and no member's facts call for a move.
    """
    problems = [str(breach) for breach in (await audit_database(
        core, batch_size=TEST_BATCH, swept=swept)).breaches]
    if problems:
        more = f"\n... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
        raise AssertionError(f"{len(problems)} invariant(s) broken:\n" + "\n".join(problems[:MAX_REPORTED]) + more)
