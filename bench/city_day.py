"""A city's day of 先诊疗后付费 under the Xiamen preset, made from a seed, and what it must leave.

`make_day(seed, visits, charges_per_visit)` gives the same day for the same arguments: residents
with 白鹭分 credit scores and the financial institution each chose (the preset's tiers give their
lines, capped by the institution), their dependants (minors and
elderly parents, who draw on the payer's line), the visits of one day at two hospitals in time
order, each with its charges and their insurance split (insurance, personal account, self-pay),
which bills are paid through WeChat Pay or Alipay (80%; some notices late or sent twice; they go
out of order) and which are left to the sweep, and the /wechat questions members ask meanwhile.

The generator keeps its own ledger: each bill's self-pay and what is paid of it, the interest an
unpaid one bears past its institution's interest-free days, each payer's used credit once every
notice is in. A payer's visits of the day never add up to more than
their line, so no charge may be refused whatever order the requests arrive in.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import random
from dataclasses import dataclass
from datetime import date, timedelta

from stdnum.cn import ric

from billing.interest import daily_fen
from billing.policy import load_policy

POLICY = "xiamen"
HOSPITALS = {"XM1": "厦门市第一医院", "XM2": "厦门大学附属中山医院"}
DISTRICTS = ("350200", "350203", "350205", "350206", "350211", "350212", "350213")  # 厦门市, 思明 海沧 湖里 集美 同安 翔安
SURNAMES = "陈林黄张李王吴刘蔡杨郑许谢洪曾叶苏庄"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志鹏"
CATEGORIES = (("registration", "挂号费"), ("exam", "彩超"), ("lab", "血常规"), ("drug", "阿莫西林"), ("treatment", "换药"))
SELF_PAY_PERCENT = (10, 20, 30, 100)  # of a charge: covered items, and one the insurance leaves out
INSURANCE_SHARE_PERCENT = 80  # of what is not self-pay; the personal account pays the rest
CHARGE_FEN = (300, 20_000)
DAY_START_S, DAY_END_S = 8 * 3600, 20 * 3600
PAID_SHARE, WECHATPAY_SHARE, LATE_SHARE, TWICE_SHARE, ASK_SHARE = 0.80, 0.55, 0.10, 0.05, 0.10
MEMBERS_PER_VISIT = 0.5
DEPENDANT_SHARE = 0.2  # of members, with one dependant each; a quarter of visits are dependants'
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(district: str, born: date, serial: int) -> str:
    body = f"{district}{born:%Y%m%d}{serial:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, WEIGHTS)) % 11]


@dataclass(frozen=True)
class Person:
    id_number: str
    name: str
    score: int | None  # None: a dependant, not enrolled
    openid: str | None
    institution: str | None = None  # the financial institution a member chose at enrolment (the preset's codes)


@dataclass(frozen=True)
class Charge:
    charge_no: str
    category: str
    name: str
    amount_fen: int
    insurance_fen: int
    personal_account_fen: int
    self_pay_fen: int


@dataclass(frozen=True)
class Visit:
    visit_no: str
    hospital: str
    at_s: int  # seconds after midnight, China time
    patient: str  # the ID number the hospital sends
    payer: str  # whose line it draws on
    charges: tuple[Charge, ...]
    channel: str | None  # "wechatpay", "alipay", or None: left unpaid
    copies: int  # notices sent for the payment
    late: bool  # its notice comes after the day's visits
    ask: str | None  # what the payer says on /wechat after the checkout

    @property
    def self_pay_fen(self) -> int:
        return sum(charge.self_pay_fen for charge in self.charges)


@dataclass
class Day:
    seed: int
    members: list[Person]
    dependants: list[tuple[str, str, Person]]  # (payer's ID number, relation, dependant)
    visits: list[Visit]  # in time order

    def registry_csv(self) -> str:
        """Every person of the day as the resident registry (XINYI_REGISTRY) lists them."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("id_number", "name", "region", "insurance_status", "dishonest", "credit_score"))
        for person in [*self.members, *(dependant for _, _, dependant in self.dependants)]:
            writer.writerow((person.id_number, person.name, "350200", "normal", 0, "" if person.score is None else person.score))
        return out.getvalue()

    def bills(self) -> dict[str, tuple[int, int]]:
        """visit_no -> (self-pay, paid) once every notice is in."""
        return {visit.visit_no: (visit.self_pay_fen, visit.self_pay_fen if visit.channel else 0) for visit in self.visits}

    def interest_fen(self, days_past_latest_due: int) -> dict[str, int]:
        """visit_no -> the interest its bill bears at a sweep `days_past_latest_due` whole days after
        the latest due time of the day's bills (the preset's longest interest-free period): each
        unpaid bill, for each whole day past its own due time, its institution's day of interest."""
        policy = load_policy(POLICY)
        longest = max(institution.interest_free_days for institution in policy.institutions)
        chosen = {member.id_number: policy.institution(member.institution) for member in self.members}
        interest = {}
        for visit in self.visits:
            terms = chosen[visit.payer]
            days = longest - terms.interest_free_days + days_past_latest_due
            interest[visit.visit_no] = 0 if visit.channel else days * daily_fen(visit.self_pay_fen, terms.daily_interest_ppm)
        return interest

    def used_fen(self) -> dict[str, int]:
        """Each member's used credit once every notice is in: their unpaid bills."""
        used = dict.fromkeys((member.id_number for member in self.members), 0)
        for visit in self.visits:
            if visit.channel is None:
                used[visit.payer] += visit.self_pay_fen
        return used

    @property
    def charges(self) -> int:
        return sum(len(visit.charges) for visit in self.visits)


def make_day(seed: int, visits: int, charges_per_visit: int) -> Day:
    rng = random.Random(seed)
    policy = load_policy(POLICY)
    taken: set[str] = set()

    def person(born_from: int, born_to: int, score: int | None, openid: str | None) -> Person:
        while True:
            born = date(born_from, 1, 1) + timedelta(days=rng.randrange((born_to - born_from) * 365))
            number = id_number(rng.choice(DISTRICTS), born, rng.randrange(1000))
            if number not in taken and ric.is_valid(number):  # a district code in use when they were born
                taken.add(number)
                return Person(number, rng.choice(SURNAMES) + "".join(rng.choices(GIVEN, k=rng.choice((1, 2)))), score, openid)

    codes = [institution.code for institution in policy.institutions]
    members = [dataclasses.replace(person(1950, 2000, rng.randrange(420, 720), f"o-city-{n:06d}"), institution=rng.choice(codes))
               for n in range(max(int(visits * MEMBERS_PER_VISIT), 10))]
    limits = {member.id_number: policy.line_limit(policy.limit_for_score(member.score)[0], member.institution)
              for member in members}
    dependants = []
    for member in rng.sample(members, int(len(members) * DEPENDANT_SHARE)):
        relation = rng.choice(("child", "parent"))
        born = (2010, 2020) if relation == "child" else (1935, 1950)
        dependants.append((member.id_number, relation, person(*born, None, None)))
    room = dict(limits)
    plans = []
    for n, at_s in enumerate(sorted(rng.randrange(DAY_START_S, DAY_END_S) for _ in range(visits))):
        visit_no = f"MZ{n:07d}"
        charges = tuple(_charge(rng, f"{visit_no}-{k}") for k in range(charges_per_visit))
        self_pay = sum(charge.self_pay_fen for charge in charges)
        while True:  # someone whose line still has room for it
            if dependants and rng.random() < 0.25:
                payer, _, dependant = rng.choice(dependants)
                patient = dependant.id_number
            else:
                payer = patient = rng.choice(members).id_number
            if room[payer] >= self_pay:
                break
        room[payer] -= self_pay
        paid = rng.random() < PAID_SHARE
        plans.append(Visit(
            visit_no, rng.choice(list(HOSPITALS)), at_s, patient, payer, charges,
            channel=("wechatpay" if rng.random() < WECHATPAY_SHARE else "alipay") if paid else None,
            copies=2 if paid and rng.random() < TWICE_SHARE else 1, late=paid and rng.random() < LATE_SHARE,
            ask=rng.choice(("账单", "额度")) if rng.random() < ASK_SHARE else None))
    return Day(seed, members, dependants, plans)


def _charge(rng: random.Random, charge_no: str) -> Charge:
    category, name = rng.choice(CATEGORIES)
    amount = rng.randrange(*CHARGE_FEN)
    self_pay = amount * rng.choice(SELF_PAY_PERCENT) // 100
    insurance = (amount - self_pay) * INSURANCE_SHARE_PERCENT // 100
    return Charge(charge_no, category, name, amount, insurance, amount - self_pay - insurance, self_pay)
