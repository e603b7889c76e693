"""Policies are data: the presets load, a malformed file is refused with FILE: KEY: PROBLEM,
and a fourth city defined only by a TOML file runs end to end."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from billing.documents import document
from billing.policy import NOTICE_KINDS, PRESETS_DIR, LadderRule, PolicyError, RepairRule, Tier, load_policy
from helpers import (
    bill, checkout, enrol, line, open_visit, pay_in_full, status_of, sweep_checked, used_fen, visit_with_charges,
)

BEIJING = (PRESETS_DIR / "beijing-shijingshan.toml").read_text(encoding="utf-8")
XIAMEN = (PRESETS_DIR / "xiamen.toml").read_text(encoding="utf-8")
NANTONG = (PRESETS_DIR / "nantong.toml").read_text(encoding="utf-8")


def test_a_citys_own_document_texts_beside_its_file(tmp_path):
    (tmp_path / "city.toml").write_text(edit(BEIJING, '"bj-shijingshan-2021-11"', '"sjz-2026-01"'), encoding="utf-8")
    with pytest.raises(PolicyError, match="sjz-2026-01.zh_Hans.txt beside this file"):
        load_policy(str(tmp_path / "city.toml"))
    (tmp_path / "sjz-2026-01.zh_Hans.txt").write_text("石家庄信用就医承诺书\n\n按时付款。\n", encoding="utf-8")
    policy = load_policy(str(tmp_path / "city.toml"))
    found = document(policy, "commitment", "en")  # no English text: the Simplified Chinese one
    assert (found.version, found.locale, found.title, found.paragraphs) == ("sjz-2026-01", "zh_Hans", "石家庄信用就医承诺书",
                                                                            ("按时付款。",))
    assert document(policy, "privacy", "en").title.startswith("Privacy notice (Shijingshan")  # shipped with xinyi


def test_presets_load_with_the_seed_rules():
    beijing = load_policy("beijing-shijingshan")
    assert (beijing.limit_fen, beijing.due_hours, beijing.reminder_offsets_hours) == (200000, 48, (0, 24, 48))
    assert (beijing.regions, beijing.min_age, beijing.exclude_dishonest, beijing.advance_after_days) == (("110000",), 18, True, 0)
    assert [rule.stage for rule in beijing.ladder] == ["blacklisted", "revoked", "suspended"]
    assert beijing.ladder[0].report == "central_bank_credit_system"

    nantong = load_policy("nantong")
    assert (nantong.due_hours, nantong.reminder_offsets_hours, nantong.repair_required) == (24, (24,), True)
    assert nantong.ladder == (LadderRule("suspended", days_overdue=30, report="personal_credit_file", record_malicious_debt=True),)
    assert set(nantong.exclusions) == {"crime", "abortion", "third_party_liability", "malicious_debt", "other"}
    assert nantong.repair == RepairRule(wait_days=0, renew_commitment=True, operator_approval=False, automatic=False)
    assert (beijing.repair_required, load_policy("xiamen").repair_required) == (False, False)

    xiamen = load_policy("xiamen")
    assert xiamen.limit_fen is None and xiamen.require_credit_score
    assert xiamen.tiers == (Tier(0, 50000), Tier(501, 100000), Tier(601, 300000))
    assert (xiamen.due_hours, xiamen.value_added_min_score) == (1008, 651)
    # "签约金融机构提供至少42天免息期" (004): the institutions (ours: the seed names none) and the floor they keep to
    assert xiamen.min_interest_free_days == 42
    assert [(i.code, i.name("en"), i.interest_free_days, i.daily_interest_ppm, i.max_limit_fen) for i in xiamen.institutions] == [
        ("ludao-bank", "Ludao Example Bank", 42, 500, 300000), ("haixi-insurance", "Haixi Example Insurance", 60, 300, 100000)]
    assert xiamen.line_limit(300000, "haixi-insurance") == 100000 and xiamen.line_limit(50000, "haixi-insurance") == 50000
    assert beijing.institutions == nantong.institutions == () and beijing.line_limit(200000, None) == 200000


def test_presets_name_the_channel_of_each_notice():
    """Beijing (001): SMS and WeChat at leaving, +24 h, +48 h, the notice at leaving being the bill; Nantong
    (002): an SMS past 24 h; Xiamen (004) names no channel: WeChat (SMS where WeChat cannot reach)."""
    wechat, sms, both = frozenset({"wechat"}), frozenset({"sms"}), frozenset({"wechat", "sms"})
    beijing, nantong, xiamen = (load_policy(name) for name in ("beijing-shijingshan", "nantong", "xiamen"))
    assert beijing.channels("bill_issued") == both
    assert [beijing.channels("bill_reminder", hours) for hours in (0, 24, 48)] == [wechat, both, both]
    assert beijing.channels("bill_overdue") == beijing.channels("status_changed") == wechat
    assert nantong.channels("bill_reminder", 24) == sms and nantong.channels("bill_issued") == wechat
    assert {xiamen.channels(kind, 672) for kind in NOTICE_KINDS} == {wechat}


def test_offers_need_the_members_own_yes_in_every_preset_and_are_off_unless_a_file_allows_them(tmp_path):
    """Seed 004: "严禁金融机构在未获得用户授权的前提下开展商业营销活动"; the other seeds are silent, and keep the same rule."""
    for name in ("beijing-shijingshan", "nantong", "xiamen"):
        assert load_policy(name).marketing_allowed, name
    path = tmp_path / "city.toml"
    path.write_text(FOURTH_CITY, encoding="utf-8")
    assert not load_policy(str(path)).marketing_allowed  # a city that says nothing sends no offers
    path.write_text(FOURTH_CITY + "\n[marketing]\nallowed = true\n", encoding="utf-8")
    assert load_policy(str(path)).marketing_allowed  # consent is required without saying so


def test_unknown_preset_names_the_presets():
    with pytest.raises(PolicyError, match=r"shanghai: no such preset .*beijing-shijingshan, nantong, xiamen"):
        load_policy("shanghai")


def test_missing_file():
    with pytest.raises(PolicyError, match="nowhere.toml: file not found"):
        load_policy("/nowhere.toml")


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


MALFORMED = [
    ("bad TOML", BEIJING + "\nname = [\n", "name", "not valid TOML"),
    ("missing key", edit(BEIJING, "due_hours = 48\n", ""), "repayment.due_hours", "missing"),
    ("wrong type", edit(BEIJING, "due_hours = 48", 'due_hours = "48"'), "repayment.due_hours", "expected int, got '48'"),
    ("bool for a number", edit(BEIJING, "min_age = 18", "min_age = true"), "enrolment.min_age", "expected a whole number"),
    ("negative", edit(BEIJING, "min_age = 18", "min_age = -1"), "enrolment.min_age", "must be at least 0"),
    ("unknown key", edit(BEIJING, "limit_fen = 200000", "limit_fen = 200000\nlimit_yuan = 2000"), "credit.limit_yuan", "unknown key"),
    ("unknown top-level key", "city = 1\n" + BEIJING, "city", "unknown key"),
    ("unknown key in a rule", edit(BEIJING, "overdue_count = 6", "overdue_count = 6\nfine_fen = 100"),
     "overdue.ladder[1].fine_fen", "unknown key"),
    ("tiers out of order", edit(XIAMEN, "min_score = 501", "min_score = 700"), "credit.tiers[2].min_score", "ascending"),
    ("ladder out of severity order", edit(BEIJING, 'stage = "blacklisted"', 'stage = "suspended"'), "overdue.ladder[1].stage",
     "most severe first"),
    ("unknown stage", edit(BEIJING, 'stage = "revoked"', 'stage = "frozen"'), "overdue.ladder[1].stage", "unknown stage 'frozen'"),
    ("unknown channel", edit(BEIJING, 'bill_overdue = "wechat"', 'bill_overdue = "fax"'), "notices.bill_overdue",
     "unknown channel 'fax' (allowed: wechat, sms, wechat+sms)"),
    ("unknown channel of a reminder", edit(BEIJING, '["wechat", "wechat+sms", "wechat+sms"]', '["wechat", "sms+wechat", "sms"]'),
     "notices.bill_reminder[1]", "unknown channel 'sms+wechat'"),
    ("a channel per reminder", edit(BEIJING, '["wechat", "wechat+sms", "wechat+sms"]', '["sms", "sms"]'),
     "notices.bill_reminder", "2 channels for 3 reminders"),
    ("a channel of another notice", edit(NANTONG, 'bill_issued = "wechat"', 'bill_issued = "wechat"\nbill_paid = "sms"'),
     "notices.bill_paid", "unknown key"),
    ("a channel list for one notice", edit(NANTONG, 'bill_issued = "wechat"', 'bill_issued = ["wechat"]'),
     "notices.bill_issued", "expected str"),
    ("unknown exclusion", edit(BEIJING, "exclusions = []", 'exclusions = ["gambling"]'), "coverage.exclusions",
     "unknown value 'gambling'"),
    ("limit and tiers", edit(XIAMEN, "value_added_min_score = 651", "value_added_min_score = 651\nlimit_fen = 100000"),
     "credit", "set exactly one of limit_fen or [[credit.tiers]]"),
    ("neither limit nor tiers", edit(BEIJING, "limit_fen = 200000\n", ""), "credit", "set exactly one"),
    ("rule without a condition", edit(BEIJING, "overdue_count = 6\n", ""), "overdue.ladder[1]", "at least one condition"),
    ("collection without advance", edit(BEIJING, "advance_after_days = 0\n", ""), "overdue.ladder[0].days_since_advance",
     "needs overdue.advance_after_days"),
    ("more unheeded reminders than come after the due time", edit(XIAMEN, "reminders_unheeded = 2", "reminders_unheeded = 3"),
     "overdue.ladder[0].reminders_unheeded", "only 2 reminder(s) come after the due time"),
    ("unheeded reminders as text", edit(XIAMEN, "reminders_unheeded = 2", 'reminders_unheeded = "two"'),
     "overdue.ladder[0].reminders_unheeded", "expected int, got 'two'"),
    ("a value-added line no score earns", edit(XIAMEN, "value_added_min_score = 651\n", ""),
     "credit.value_added_inpatient_limit_fen", "needs credit.value_added_min_score"),
    ("a value-added line beside everyone's", edit(XIAMEN, "value_added_min_score = 651", "value_added_min_score = 651\ninpatient_limit_fen = 5"),
     "credit.value_added_inpatient_limit_fen", "gives every member one already"),
    ("reminders out of order", edit(BEIJING, "[0, 24, 48]", "[24, 0]"), "repayment.reminder_offsets_hours", "ascending"),
    ("bad region", edit(BEIJING, '["110000"]', '["Beijing"]'), "enrolment.regions", "not a 6-digit region code"),
    ("hold of nothing", edit(BEIJING, "\nhold_percent = 100", "\nhold_percent = 0"), "credit.hold_percent",
     "must be at least 1"),
    ("hold above the price", edit(BEIJING, "\nhold_percent = 100", "\nhold_percent = 101"),
     "credit.hold_percent", "whole percent from 1 to 100"),
    ("repair without repair_required", edit(NANTONG, "repair_required = true", "repair_required = false"), "repair",
     "overdue.repair_required is false, so no repair applies"),
    ("repair waiting a negative time", edit(NANTONG, "wait_days = 0", "wait_days = -3"), "repair.wait_days", "must be at least 0"),
    ("repair approval as text", edit(NANTONG, "operator_approval = false", 'operator_approval = "yes"'),
     "repair.operator_approval", "expected bool, got 'yes'"),
    ("unknown repair key", edit(NANTONG, "automatic = false", "automatic = false\nfee_fen = 500"), "repair.fee_fen", "unknown key"),
    ("approval that completes by itself", edit(NANTONG, "operator_approval = false\nautomatic = false",
                                               "operator_approval = true\nautomatic = true"),
     "repair.automatic", "needs an operator's approval cannot complete by itself"),
    ("an institution below the programme's floor", edit(XIAMEN, "\ninterest_free_days = 42", "\ninterest_free_days = 41"),
     "institutions[0].interest_free_days", "41 is below the programme's floor repayment.min_interest_free_days = 42"),
    ("institutions without a floor", edit(XIAMEN, "min_interest_free_days = 42\n", ""), "repayment.min_interest_free_days",
     "missing"),
    ("a floor without institutions", edit(BEIJING, "due_hours = 48", "due_hours = 48\nmin_interest_free_days = 42"),
     "repayment.min_interest_free_days", "only with [[institutions]]"),
    ("an institution listed twice", edit(XIAMEN, 'code = "haixi-insurance"', 'code = "ludao-bank"'), "institutions[1].code",
     "'ludao-bank' is listed twice"),
    ("an institution code that is no code", edit(XIAMEN, 'code = "ludao-bank"', 'code = "鹭岛 bank"'), "institutions[0].code",
     "up to 32 ASCII letters"),
    ("an institution without a Simplified Chinese name", edit(XIAMEN, 'zh_Hans = "海西示例保险", ', ""), "institutions[1].name",
     "zh_Hans at least"),
    ("an institution named in an unknown language", edit(XIAMEN, 'en = "Ludao Example Bank"', 'fr = "Banque"'),
     "institutions[0].name.fr", "unknown language"),
    ("interest of the whole principal a day", edit(XIAMEN, "\ndaily_interest_ppm = 500", "\ndaily_interest_ppm = 1000000"),
     "institutions[0].daily_interest_ppm", "all of it or more"),
    ("interest as a percentage", edit(XIAMEN, "daily_interest_ppm = 300", "daily_interest_ppm = 0.03"),
     "institutions[1].daily_interest_ppm", "expected a whole number >= 0"),
    ("an institution capping the line at nothing", edit(XIAMEN, "max_limit_fen = 100000", "max_limit_fen = 0"),
     "institutions[1].max_limit_fen", "must be at least 1"),
    ("an unknown key of an institution", edit(XIAMEN, "max_limit_fen = 100000", "max_limit_fen = 100000\npenalty_fen = 5"),
     "institutions[1].penalty_fen", "unknown key"),
    ("a document without its text", edit(BEIJING, '"bj-shijingshan-2021-11"', '"bj-2030-01"'), "documents.commitment_version",
     "no text for 'bj-2030-01'"),
    ("offers without consent", edit(XIAMEN, "requires_consent = true", "requires_consent = false"),
     "marketing.requires_consent", "must be true: an offer goes only to a member who said yes"),
    ("offers allowed as text", edit(XIAMEN, "allowed = true", 'allowed = "yes"'), "marketing.allowed", "expected bool"),
    ("unknown marketing key", edit(XIAMEN, "allowed = true", "allowed = true\nsms = true"), "marketing.sms", "unknown key"),
    ("a document version that is no file name", edit(BEIJING, '"privacy-bj-2026-01"', '"../privacy"'),
     "documents.consent_version", "a version is up to 32 letters"),
]


@pytest.mark.parametrize("text, key, problem", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_policy_names_file_key_and_problem(tmp_path, text, key, problem):
    path = tmp_path / "city.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as raised:
        load_policy(str(path))
    message = str(raised.value)
    assert message.startswith(f"{path}: ")
    assert problem in message
    if problem != "not valid TOML":  # the parser names a line and column instead of a key
        assert f": {key}: " in message


FOURTH_CITY = """
name = "石家庄信用就医"

[documents]
consent_version = "privacy-2026-01"
commitment_version = "commitment-2026-01"   # the generic texts shipped with xinyi

[enrolment]
regions = ["130000"]
insurance_statuses = ["normal"]
min_age = 18

[credit]
limit_fen = 150000
inpatient_limit_fen = 1000000

[repayment]
due_hours = 72
reminder_offsets_hours = [0, 72]

[overdue]
[[overdue.ladder]]
stage = "suspended"
days_overdue = 3

[coverage]
exclusions = ["crime"]
"""
ZHAO_LEI = "130102198808080087"  # insured in region 130000 in the demo registry


async def test_fourth_city_from_a_file_runs_end_to_end(make_core, tmp_path: Path):
    path = tmp_path / "shijiazhuang.toml"
    path.write_text(FOURTH_CITY, encoding="utf-8")
    core = await make_core(str(path))
    member_id = await enrol(core, ZHAO_LEI)
    assert (await line(core, member_id)).limit_fen == 150000
    assert (await line(core, member_id, "inpatient")).limit_fen == 1000000

    outpatient = await visit_with_charges(core, ZHAO_LEI, 12000)
    outpatient_bill = (await checkout(core, outpatient))["bill_no"]
    issued = await bill(core, outpatient_bill)
    assert (issued.due_at - issued.issued_at).total_seconds() == 72 * 3600

    ward = await visit_with_charges(core, ZHAO_LEI, 500000, kind="inpatient")  # beyond the outpatient line
    assert ward.on_credit
    assert (await used_fen(core, member_id, "inpatient"), await used_fen(core, member_id)) == (500000, 12000)
    ward_bill = (await checkout(core, ward, insurance={ward.charge_nos[0]: 350000}))["bill_no"]
    assert (await bill(core, ward_bill)).self_pay_fen == 150000
    assert await used_fen(core, member_id, "inpatient") == 150000

    excluded = await open_visit(core, ZHAO_LEI, exclusion="crime")
    assert (excluded.on_credit, excluded.reason) == (False, "crime")

    core.clock.advance(hours=73)
    await sweep_checked(core)
    assert (await bill(core, outpatient_bill)).status == "overdue"
    assert await status_of(core, member_id) == "active"
    core.clock.advance(days=3)
    await sweep_checked(core)
    assert await status_of(core, member_id) == "suspended"


async def test_a_fourth_city_lists_its_own_institutions_in_its_file_alone(make_core, tmp_path: Path):
    """The institutions are data too: a city of its own, a flat line, one lender of its own whose cap
    is below the line and whose rate rounds down to the fen, with no code."""
    lender = ('\n[[institutions]]\ncode = "sjz-credit"\nname = { zh_Hans = "石家庄示例信贷", en = "Shijiazhuang Example Credit" }\n'
              "interest_free_days = 45\ndaily_interest_ppm = 333\nmax_limit_fen = 120000\n")
    text = edit(FOURTH_CITY, "reminder_offsets_hours = [0, 72]", "reminder_offsets_hours = [0, 72]\nmin_interest_free_days = 45")
    (tmp_path / "sjz.toml").write_text(text + lender, encoding="utf-8")
    core = await make_core(str(tmp_path / "sjz.toml"))
    assert core.policy.institution("sjz-credit").name("zh_Hant") == "石家庄示例信贷"  # no zh_Hant name: the zh_Hans one
    member_id = await enrol(core, ZHAO_LEI, institution="sjz-credit")
    assert (await line(core, member_id)).limit_fen == 120000
    bill_no = (await checkout(core, await visit_with_charges(core, ZHAO_LEI, 10000)))["bill_no"]
    issued = await bill(core, bill_no)
    assert (issued.due_at - issued.issued_at, issued.daily_interest_ppm) == (timedelta(days=45), 333)
    core.clock.advance(days=45 + 4, hours=1)  # 3.33 fen a day on 100 yuan: 3
    await sweep_checked(core)
    assert (await bill(core, bill_no)).interest_fen == 12
    assert await status_of(core, member_id) == "suspended"
    await pay_in_full(core, bill_no)
    await sweep_checked(core)
    assert (await status_of(core, member_id), (await bill(core, bill_no)).interest_paid_fen) == ("active", 12)
