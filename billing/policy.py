"""Programme policies as data: a TOML file per city or hospital, validated at load.

A preset is named (`beijing-shijingshan`, `nantong`, `xiamen`) or a path is given.
Every problem is reported as `FILE: KEY: PROBLEM`, and loading stops at the first.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from billing.documents import DOCUMENT_NAMES, text_path

PRESETS_DIR = Path(__file__).with_name("presets")
EXCLUSION_CODES = ("crime", "abortion", "third_party_liability", "malicious_debt", "other")
INSURANCE_STATUSES = ("normal", "suspended", "none")
# What the core tells people (the outbox's notice kinds), and the channels a policy may name for each:
# "wechat" is a template or customer-service message, and SMS only where WeChat cannot reach the member.
NOTICE_KINDS = ("bill_issued", "bill_reminder", "bill_overdue", "status_changed", "refund_due", "payment_received",
                "line_rerated")
CHANNELS = {"wechat": frozenset({"wechat"}), "sms": frozenset({"sms"}), "wechat+sms": frozenset({"wechat", "sms"})}
# Most severe first; the ladder must list its rules in this order.
STAGE_SEVERITY = {"blacklisted": 3, "revoked": 2, "suspended": 1}
# An institution's name is data shown in chat, one per chat language; zh_Hans is required.
NAME_LOCALES = ("zh_Hans", "zh_Hant", "en")
PPM = 1_000_000  # daily_interest_ppm is interest per day per million fen of unpaid principal


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Tier:
    min_score: int
    limit_fen: int


@dataclass(frozen=True)
class LadderRule:
    """A stage and the facts that put a member in it (all given conditions must hold)."""

    stage: str
    days_overdue: int | None = None
    overdue_count: int | None = None
    days_since_advance: int | None = None
    over_limit: bool | None = None
    reminders_unheeded: int | None = None  # reminders sent after the due time for a bill still unpaid
    report: str | None = None
    record_malicious_debt: bool = False


@dataclass(frozen=True)
class Institution:
    """A financial institution that grants the line and carries the risk (seed 004: "个人信用白鹭分+平台+
    金融机构"; "在信用就医公共服务平台上自主选择金融机构"), with its terms: the interest-free days after
    checkout, the simple interest per day on the principal still unpaid after them, and its cap
    on the line the credit score earns."""

    code: str
    names: tuple[tuple[str, str], ...]  # (locale, name): zh_Hans first
    interest_free_days: int
    daily_interest_ppm: int
    max_limit_fen: int

    def name(self, locale: str) -> str:
        names = dict(self.names)
        return names.get(locale, names["zh_Hans"])


@dataclass(frozen=True)
class RepairRule:
    """信用修复 (seed 002): what lifts a suspension the policy keeps until repair. Every overdue
    bill paid, always; then, as the policy asks, a waiting period, the commitment signed
    again in chat, an operator's approval. `automatic`: the sweep completes it once the rest
    holds; otherwise the member (信用修复 in chat) or an operator asks for it."""

    wait_days: int = 0  # from the later of the suspension and the last overdue bill's payment
    renew_commitment: bool = False
    operator_approval: bool = False
    automatic: bool = False

    def waiting_until(self, settled_at: datetime | None, now: datetime) -> datetime | None:
        """When the waiting period ends, while it has not; None once it has (or there is none)."""
        if not self.wait_days or settled_at is None:
            return None
        until = settled_at + timedelta(days=self.wait_days)
        return until if until > now else None


@dataclass(frozen=True)
class Policy:
    name: str
    source: str
    # enrolment
    regions: tuple[str, ...]
    insurance_statuses: tuple[str, ...]
    min_age: int
    exclude_dishonest: bool
    require_credit_score: bool
    consent_version: str
    commitment_version: str
    # credit
    limit_fen: int | None
    tiers: tuple[Tier, ...]
    value_added_min_score: int | None
    inpatient_limit_fen: int | None  # every member's inpatient line
    value_added_inpatient_limit_fen: int | None  # an inpatient line without deposit, a value-added service
    hold_percent: int  # of an order's price the line holds when the HIS sends no self-pay estimate
    # repayment
    due_hours: int
    reminder_offsets_hours: tuple[int, ...]
    # overdue
    advance_after_days: int | None
    repair_required: bool
    ladder: tuple[LadderRule, ...]
    # coverage and family
    exclusions: tuple[str, ...]
    minor_age: int
    minors_share_guardian_line: bool
    adult_children_pay_parents: bool
    max_dependents: int
    repair: RepairRule = field(default_factory=RepairRule)
    # [notices]: the channels of each notice kind; a kind not named goes by WeChat. A reminder's
    # channels are per offset, in the order of reminder_offsets_hours.
    notice_channels: dict[str, frozenset[str]] = field(default_factory=dict, hash=False)  # a Policy stays hashable
    reminder_channels: tuple[frozenset[str], ...] = ()
    # [[institutions]]: the member chooses one at enrolment; none listed, no choice and no interest.
    institutions: tuple[Institution, ...] = ()
    min_interest_free_days: int | None = None  # the programme's floor for every institution's interest-free days
    # [marketing]: partners' offers are sent at all; only ever to members who said yes (billing/marketing.py)
    marketing_allowed: bool = False

    def institution(self, code: str | None) -> Institution | None:
        return next((i for i in self.institutions if i.code == code), None)

    def line_limit(self, tier_fen: int, institution: str | None) -> int:
        """The outpatient line: what the policy (or the credit score) gives, capped by the chosen institution."""
        chosen = self.institution(institution)
        return tier_fen if chosen is None else min(tier_fen, chosen.max_limit_fen)

    def channels(self, kind: str, offset_hours: int | None = None) -> frozenset[str]:
        """How the notice `kind` goes: {"wechat"}, {"sms"} or both (a reminder: the one at `offset_hours`)."""
        if kind == "bill_reminder" and offset_hours in self.reminder_offsets_hours and self.reminder_channels:
            return self.reminder_channels[self.reminder_offsets_hours.index(offset_hours)]
        return self.notice_channels.get(kind, CHANNELS["wechat"])

    def document_version(self, name: str) -> str:
        """The version of a policy document (`privacy`, `commitment`) a member accepts now."""
        return {"privacy": self.consent_version, "commitment": self.commitment_version}[name]

    def inpatient_limit(self, value_added: bool) -> int | None:
        """The inpatient line a member has, if any: every member's, or the value-added one."""
        if self.inpatient_limit_fen is not None:
            return self.inpatient_limit_fen
        return self.value_added_inpatient_limit_fen if value_added else None

    def limit_for_score(self, score: int | None) -> tuple[int, bool]:
        """The line and the value-added flag a credit score earns (flat policies ignore it)."""
        if self.limit_fen is not None:
            return self.limit_fen, False
        assert score is not None, "a tiered policy needs a score; eligibility checks that first"
        limit = max((t for t in self.tiers if t.min_score <= score), key=lambda t: t.min_score).limit_fen
        value_added = self.value_added_min_score is not None and score >= self.value_added_min_score
        return limit, value_added


def load_policy(name_or_path: str) -> Policy:
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.exists():
            presets = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.toml")))
            raise PolicyError(f"{name_or_path}: no such preset (presets: {presets}; or give a .toml path)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path}: not valid TOML: {exc}") from None
    return _Reader(path, data).policy()


class _Reader:
    """Reads keys out of nested tables, naming file and key in every complaint."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> PolicyError:
        return PolicyError(f"{self.path}: {key}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        """The value at a dotted key such as `credit.limit_fen`, checked for its type."""
        self.seen.add(key)
        *tables, leaf = key.split(".")
        source: Any = self.data
        for i, table in enumerate(tables):
            source = source.get(table, {})
            if not isinstance(source, dict):
                raise self.fail(".".join(tables[: i + 1]), "expected a table")
        if leaf not in source:
            if default is ...:
                raise self.fail(key, "missing")
            return default
        value = source[leaf]
        if isinstance(value, bool) and kind is int:
            raise self.fail(key, f"expected a whole number, got {value!r}")
        if not isinstance(value, kind):
            raise self.fail(key, f"expected {getattr(kind, '__name__', kind)}, got {value!r}")
        return value

    def nonneg(self, key: str, default: Any = ..., minimum: int = 0) -> Any:
        value = self.get(key, int, default)
        if value is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def _percent(self, key: str, default: int) -> int:
        value = self.nonneg(key, default, minimum=1)
        if value > 100:
            raise self.fail(key, f"must be a whole percent from 1 to 100, got {value}")
        return value

    def str_list(self, key: str, allowed: tuple[str, ...] | None = None, default: Any = ...) -> tuple[str, ...]:
        values = self.get(key, list, default)
        for v in values:
            if not isinstance(v, str):
                raise self.fail(key, f"expected strings, got {v!r}")
            if allowed is not None and v not in allowed:
                raise self.fail(key, f"unknown value {v!r} (allowed: {', '.join(allowed)})")
        return tuple(values)

    def policy(self) -> Policy:
        tiers = self._tiers()
        limit_fen = self.nonneg("credit.limit_fen", None)
        if (limit_fen is None) == (not tiers):
            raise self.fail("credit", "set exactly one of limit_fen or [[credit.tiers]]")
        regions = self.str_list("enrolment.regions")
        for region in regions:
            if not (len(region) == 6 and region.isdigit()):
                raise self.fail("enrolment.regions", f"{region!r} is not a 6-digit region code")
        require_score = self.get("enrolment.require_credit_score", bool, False)
        if tiers and not require_score:
            raise self.fail("enrolment.require_credit_score", "a tiered line needs a credit score: set it to true")
        offsets = tuple(self.get("repayment.reminder_offsets_hours", list, []))
        if any(isinstance(o, bool) or not isinstance(o, int) or o < 0 for o in offsets) or list(offsets) != sorted(set(offsets)):
            raise self.fail("repayment.reminder_offsets_hours", "must be distinct whole hours >= 0, ascending")
        repair_required = self.get("overdue.repair_required", bool, False)
        floor = self.nonneg("repayment.min_interest_free_days", None, minimum=1)
        institutions = self._institutions(floor)
        policy = Policy(
            name=self.get("name", str),
            source=str(self.path),
            regions=regions,
            insurance_statuses=self.str_list("enrolment.insurance_statuses", INSURANCE_STATUSES),
            min_age=self.nonneg("enrolment.min_age", 0),
            exclude_dishonest=self.get("enrolment.exclude_dishonest", bool, True),
            require_credit_score=require_score,
            consent_version=self.get("documents.consent_version", str),
            commitment_version=self.get("documents.commitment_version", str),
            limit_fen=limit_fen,
            tiers=tiers,
            value_added_min_score=self.nonneg("credit.value_added_min_score", None),
            inpatient_limit_fen=self.nonneg("credit.inpatient_limit_fen", None),
            value_added_inpatient_limit_fen=self._value_added_inpatient(),
            hold_percent=self._percent("credit.hold_percent", 100),
            due_hours=self.nonneg("repayment.due_hours", minimum=1),
            reminder_offsets_hours=offsets,
            advance_after_days=self.nonneg("overdue.advance_after_days", None),
            repair_required=repair_required,
            repair=self._repair(repair_required),
            ladder=self._ladder(),
            exclusions=self.str_list("coverage.exclusions", EXCLUSION_CODES, ()),
            minor_age=self.nonneg("family.minor_age", 18),
            minors_share_guardian_line=self.get("family.minors_share_guardian_line", bool, True),
            adult_children_pay_parents=self.get("family.adult_children_pay_parents", bool, True),
            max_dependents=self.nonneg("family.max_dependents", 5, minimum=1),
            notice_channels={kind: self._channel(f"notices.{kind}", self.get(f"notices.{kind}", str, "wechat"))
                             for kind in NOTICE_KINDS if kind != "bill_reminder"},
            reminder_channels=self._reminder_channels(offsets),
            institutions=institutions,
            min_interest_free_days=floor,
            marketing_allowed=self._marketing(),
        )
        self._refuse_unknown_keys()
        self._check_documents(policy)
        return policy

    def _repair(self, required: bool) -> RepairRule:
        if "repair" in self.data and not required:
            raise self.fail("repair", "overdue.repair_required is false, so no repair applies: set it to true or drop [repair]")
        rule = RepairRule(
            wait_days=self.nonneg("repair.wait_days", 0),
            renew_commitment=self.get("repair.renew_commitment", bool, False),
            operator_approval=self.get("repair.operator_approval", bool, False),
            automatic=self.get("repair.automatic", bool, False),
        )
        if rule.automatic and rule.operator_approval:
            raise self.fail("repair.automatic", "a repair that needs an operator's approval cannot complete by itself")
        return rule

    def _marketing(self) -> bool:
        """`marketing.allowed` (not set: no offers at all); `requires_consent` is there to be read, and can only be true."""
        if not self.get("marketing.requires_consent", bool, True):
            raise self.fail("marketing.requires_consent", "must be true: an offer goes only to a member who said yes "
                            "(seed 004: 严禁金融机构在未获得用户授权的前提下开展商业营销活动; 广告法 art. 43)")
        return self.get("marketing.allowed", bool, False)

    def _channel(self, key: str, value: Any) -> frozenset[str]:
        if value not in CHANNELS:
            raise self.fail(key, f"unknown channel {value!r} (allowed: {', '.join(CHANNELS)})")
        return CHANNELS[value]

    def _reminder_channels(self, offsets: tuple[int, ...]) -> tuple[frozenset[str], ...]:
        """One channel for every reminder, or a list with one per reminder_offsets_hours."""
        key = "notices.bill_reminder"
        raw = self.get(key, (str, list), "wechat")
        if isinstance(raw, str):
            return tuple(self._channel(key, raw) for _ in offsets)
        if len(raw) != len(offsets):
            raise self.fail(key, f"{len(raw)} channels for {len(offsets)} reminders: give one per "
                                 "repayment.reminder_offsets_hours, or one string for all")
        return tuple(self._channel(f"{key}[{i}]", value) for i, value in enumerate(raw))

    def _check_documents(self, policy: Policy) -> None:
        """Every document the member accepts has its text, at least in Simplified Chinese."""
        for name in DOCUMENT_NAMES:
            version = policy.document_version(name)
            key = "documents.consent_version" if name == "privacy" else "documents.commitment_version"
            if not version.replace("-", "").replace("_", "").isalnum() or len(version) > 32:
                raise self.fail(key, f"{version!r}: a version is up to 32 letters, digits, - and _")
            if text_path(self.path.parent, version, "zh_Hans") is None:
                raise self.fail(key, f"no text for {version!r}: put {version}.zh_Hans.txt beside this file "
                                     "or in billing/document_texts/")

    def _tiers(self) -> tuple[Tier, ...]:
        raw = self.get("credit.tiers", list, [])
        tiers = []
        for i, item in enumerate(raw):
            key = f"credit.tiers[{i}]"
            if not isinstance(item, dict):
                raise self.fail(key, "expected a table")
            tier = Tier(self._int_in(item, key, "min_score"), self._int_in(item, key, "limit_fen"))
            if tiers and tier.min_score <= tiers[-1].min_score:
                raise self.fail(f"{key}.min_score", "tiers must be in ascending min_score order")
            tiers.append(tier)
        return tuple(tiers)

    def _int_in(self, table: dict, key: str, field: str) -> int:
        value = table.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(f"{key}.{field}", f"expected a whole number >= 0, got {value!r}")
        return value

    def _ladder(self) -> tuple[LadderRule, ...]:
        raw = self.get("overdue.ladder", list)
        if not raw:
            raise self.fail("overdue.ladder", "needs at least one rule")
        rules: list[LadderRule] = []
        fields = {"days_overdue": int, "overdue_count": int, "days_since_advance": int, "over_limit": bool,
                  "reminders_unheeded": int, "report": str, "record_malicious_debt": bool}
        for i, item in enumerate(raw):
            key = f"overdue.ladder[{i}]"
            if not isinstance(item, dict):
                raise self.fail(key, "expected a table")
            stage = item.get("stage")
            if stage not in STAGE_SEVERITY:
                raise self.fail(f"{key}.stage", f"unknown stage {stage!r} (allowed: {', '.join(STAGE_SEVERITY)})")
            values: dict[str, Any] = {}
            for name, value in item.items():
                if name == "stage":
                    continue
                kind = fields.get(name)
                if kind is None:
                    raise self.fail(f"{key}.{name}", "unknown key")
                if (kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0)) or not isinstance(value, kind):
                    raise self.fail(f"{key}.{name}", f"expected {kind.__name__}, got {value!r}")
                values[name] = value
            if not any(k in values for k in ("days_overdue", "overdue_count", "days_since_advance", "over_limit",
                                             "reminders_unheeded")):
                raise self.fail(key, "a rule needs at least one condition")
            repayment = self.data.get("repayment", {})
            after_due = [h for h in repayment.get("reminder_offsets_hours", []) if h > repayment.get("due_hours", 0)]
            if values.get("reminders_unheeded", 0) > len(after_due):
                raise self.fail(f"{key}.reminders_unheeded", f"only {len(after_due)} reminder(s) come after the due time "
                                "(repayment.reminder_offsets_hours past repayment.due_hours): the rule could never hold")
            if "days_since_advance" in values and self.data.get("overdue", {}).get("advance_after_days") is None:
                raise self.fail(f"{key}.days_since_advance", "needs overdue.advance_after_days (no advance, no collection)")
            if rules and STAGE_SEVERITY[stage] > STAGE_SEVERITY[rules[-1].stage]:
                raise self.fail(f"{key}.stage", "rules must be ordered most severe first")
            rules.append(LadderRule(stage=stage, **values))
        return tuple(rules)

    def _institutions(self, floor: int | None) -> tuple[Institution, ...]:
        raw = self.get("institutions", list, [])
        if raw and floor is None:
            raise self.fail("repayment.min_interest_free_days", "missing: the programme's floor for the institutions' "
                                                                 "interest-free days (seed 004: at least 42)")
        if floor is not None and not raw:
            raise self.fail("repayment.min_interest_free_days", "only with [[institutions]]: without them a bill is due "
                                                                 "after repayment.due_hours and bears no interest")
        found: list[Institution] = []
        for i, item in enumerate(raw):
            key = f"institutions[{i}]"
            if not isinstance(item, dict):
                raise self.fail(key, "expected a table")
            unknown = set(item) - {"code", "name", "interest_free_days", "daily_interest_ppm", "max_limit_fen"}
            if unknown:
                raise self.fail(f"{key}.{sorted(unknown)[0]}", "unknown key")
            code = item.get("code")
            if not isinstance(code, str) or not 0 < len(code) <= 32 or not code.replace("-", "").replace("_", "").isalnum() \
                    or not code.isascii():
                raise self.fail(f"{key}.code", f"expected up to 32 ASCII letters, digits, - and _, got {code!r}")
            if any(other.code == code for other in found):
                raise self.fail(f"{key}.code", f"{code!r} is listed twice")
            days = self._int_in(item, key, "interest_free_days")
            if days < floor:
                raise self.fail(f"{key}.interest_free_days", f"{days} is below the programme's floor "
                                                              f"repayment.min_interest_free_days = {floor}")
            ppm = self._int_in(item, key, "daily_interest_ppm")
            if ppm >= PPM:
                raise self.fail(f"{key}.daily_interest_ppm", f"per million fen a day: {ppm} would be all of it or more")
            cap = self._int_in(item, key, "max_limit_fen")
            if cap < 1:
                raise self.fail(f"{key}.max_limit_fen", "must be at least 1")
            found.append(Institution(code, self._names(item.get("name"), f"{key}.name"), days, ppm, cap))
        return tuple(found)

    def _names(self, raw: Any, key: str) -> tuple[tuple[str, str], ...]:
        if not isinstance(raw, dict) or not isinstance(raw.get("zh_Hans"), str) or not raw["zh_Hans"].strip():
            raise self.fail(key, "expected a table of names by language, zh_Hans at least: "
                                 '{ zh_Hans = "...", zh_Hant = "...", en = "..." }')
        for locale, name in raw.items():
            if locale not in NAME_LOCALES:
                raise self.fail(f"{key}.{locale}", f"unknown language (allowed: {', '.join(NAME_LOCALES)})")
            if not isinstance(name, str) or not 0 < len(name.strip()) <= 60:
                raise self.fail(f"{key}.{locale}", f"expected a name of 1 to 60 characters, got {name!r}")
        return tuple((locale, raw[locale].strip()) for locale in NAME_LOCALES if locale in raw)

    def _value_added_inpatient(self) -> int | None:
        limit = self.nonneg("credit.value_added_inpatient_limit_fen", None, minimum=1)
        if limit is not None and self.data.get("credit", {}).get("value_added_min_score") is None:
            raise self.fail("credit.value_added_inpatient_limit_fen", "needs credit.value_added_min_score (who earns it)")
        if limit is not None and self.data.get("credit", {}).get("inpatient_limit_fen") is not None:
            raise self.fail("credit.value_added_inpatient_limit_fen", "credit.inpatient_limit_fen gives every member one already")
        return limit

    def _refuse_unknown_keys(self) -> None:
        """A misspelt key is an error, not a silently ignored rule."""
        for key, value in self.data.items():
            if isinstance(value, dict):
                for sub in value:
                    if f"{key}.{sub}" not in self.seen:
                        raise self.fail(f"{key}.{sub}", "unknown key")
            elif key not in self.seen:
                raise self.fail(key, "unknown key")
