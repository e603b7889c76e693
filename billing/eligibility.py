"""Who may enrol and with what line: a pure decision from the policy, the registry and today."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from billing.identity import age_on, birth_date
from billing.policy import Policy
from billing.registry import Resident


@dataclass(frozen=True)
class Eligibility:
    eligible: bool
    reason: str  # "ok" or why not: a stable code the bot translates
    limit_fen: int = 0
    value_added: bool = False


def decide(policy: Policy, id_number: str, resident: Resident | None, today: date, name: str | None = None) -> Eligibility:
    if resident is None:
        return Eligibility(False, "not_in_registry")
    if name is not None and name.strip() != resident.name:
        return Eligibility(False, "name_mismatch")
    if policy.regions and resident.region not in policy.regions:
        return Eligibility(False, "insured_elsewhere")
    if policy.insurance_statuses and resident.insurance_status not in policy.insurance_statuses:
        return Eligibility(False, "insurance_not_normal")
    if age_on(birth_date(id_number), today) < policy.min_age:
        return Eligibility(False, "under_age")
    if policy.exclude_dishonest and resident.dishonest:
        return Eligibility(False, "dishonest")
    if policy.require_credit_score and resident.credit_score is None:
        return Eligibility(False, "no_credit_score")
    limit_fen, value_added = policy.limit_for_score(resident.credit_score)
    return Eligibility(True, "ok", limit_fen, value_added)
