"""The jieba intent parser: commands in three languages, slots from the domain dictionary,
tolerance of full-width characters, spaces, punctuation and emoji."""
from __future__ import annotations

import time

import pytest

from handlers.intent import lexicon, normalise, number, parse


@pytest.mark.parametrize("text,intent", [
    ("开通", "enrol"), ("開通", "enrol"), ("Enrol", "enrol"),
    ("挂号", "book"), ("掛號", "book"), ("book", "book"),
    ("账单", "bills"), ("帳單", "bills"), ("bills", "bills"),
    ("额度", "credit"), ("額度", "credit"), ("credit", "credit"),
    ("家人", "family"), ("family", "family"),
    ("缴费", "pay"), ("繳費", "pay"), ("pay", "pay"),
    ("解约", "cancel_agreement"), ("解約", "cancel_agreement"),
    ("帮助", "help"), ("幫助", "help"), ("HELP", "help"),
    ("菜单", "menu"), ("菜單", "menu"), ("menu", "menu"),
    ("取消", "cancel"), ("cancel", "cancel"),
    ("取消挂号", "cancel_booking"), ("退号", "cancel_booking"),
    ("同意", "yes"), ("確認", "yes"), ("是", "yes"), ("不同意", "no"),
    ("你好", "greet"), ("您好", "greet"), ("在吗", "greet"), ("hello", "greet"), ("Hi", "greet"),
])
def test_command_words_in_three_languages_are_exact(text, intent):
    parsed = parse(text)
    assert (parsed.name, parsed.exact) == (intent, True)


@pytest.mark.parametrize("text,locale", [("English", "en"), ("ＥＮＧＬＩＳＨ", "en"), ("繁體", "zh_Hant"),
                                         ("繁体", "zh_Hant"), ("简体", "zh_Hans"), ("簡體", "zh_Hans")])
def test_language_words(text, locale):
    parsed = parse(text)
    assert parsed.name == "language" and parsed.exact and parsed.slots["locale"] == locale


def test_full_width_spaces_and_punctuation_are_tolerated():
    assert parse("　挂　号！！").name == "book"
    assert parse("ＢＯＯＫ").name == "book"
    assert parse("【账单】").exact
    assert parse("１２").slots["number"] == 12
    assert normalise("Ｈｅｌｌｏ，　世界！👋") == "hello 世界"


@pytest.mark.parametrize("text,intent,slots", [
    ("我肚子疼想挂号", "book", {"department": "消化内科", "symptom": "肚子疼"}),
    ("肚子疼", "book", {"department": "消化内科"}),
    ("頭痛", "book", {"department": "神经内科"}),
    ("想看心内科", "book", {"department": "心血管内科"}),
    ("给妈妈挂明天的号", "book", {"relation": "parent", "day": "+1"}),
    ("周三挂骨科", "book", {"day": "wed", "department": "骨科"}),
    ("3月5号挂号", "book", {"month_day": (3, 5)}),
    ("帮我看看账单", "bills", {}),
    ("我要付钱", "pay", {}),
    ("我想取消明天的挂号", "cancel_booking", {"day": "+1"}),
    ("cancel my booking", "cancel_booking", {}),
    ("I want to book please", "book", {}),
    ("好的，确认！", "yes", {}),
    ("您好，我想挂号", "book", {}),  # a greeting yields to what is asked
    ("你好呀", "greet", {}),
    ("我同意", "yes", {}),
])
def test_free_text_yields_an_intent_and_slots(text, intent, slots):
    parsed = parse(text)
    assert parsed.name == intent and not parsed.exact
    for key, value in slots.items():
        assert parsed.slots[key] == value


@pytest.mark.parametrize("text", ["我是张伟", "今天天气不错", "😀", "", "110105198503120012"])
def test_no_intent(text):
    assert parse(text).name is None


@pytest.mark.parametrize("text,expected", [
    ("1", 1), ("12", 12), ("第2个", 2), ("第二个", 2), ("二", 2), ("两", 2), ("十", 10), ("十二", 12),
    ("二十", 20), ("二十三", 23), ("一二", None), ("5号", None), ("abc", None), ("", None),
])
def test_choice_numbers(text, expected):
    assert number(text) == expected


def test_a_long_message_is_not_parsed_and_is_quick():
    started = time.perf_counter()
    parsed = parse("挂号" * 5_000)
    assert parsed.name is None and parsed.text == "" and len(parsed.answer) <= 500
    assert time.perf_counter() - started < 0.1


def test_the_domain_dictionary():
    lex = lexicon()
    assert lex.aliases("消化内科") >= {"消化内科", "消化科", "胃肠科"}
    assert set(lex.symptoms.values()) <= set(lex.departments.values())  # every symptom leads to a known department
    assert set(lex.relations.values()) == {"parent", "child", "spouse"}
    assert not set(lex.commands) & set(lex.departments)  # no word means two things


@pytest.mark.parametrize("said,answer", [
    ("张秀英。", "张秀英"),  # WeChat's speech recognition ends a sentence with 。
    ("张秀英！", "张秀英"), (" 张 秀英？", "张 秀英"), ("阿依古丽·买买提。", "阿依古丽·买买提"),
    ("110105 19490815 0027。", "110105194908150027"),
    ("１１０１０５，１９４９０８１５，００２７", "110105194908150027"),  # full width, commas inside
    ("11010819920709006x", "11010819920709006X"),  # the check digit in lower case
    ("幺幺零幺零五 19490815 0027", "110105194908150027"),  # 幺 is how 1 is read out
    ("一二三", "一二三"), ("三七", "三七"),  # Chinese numerals alone stay words
    ("幺38-0013-8000。", "13800138000"), ("+86 138 0013 8000", "+8613800138000"),
    ("ｍａｒｙ ｓｍｉｔｈ.", "mary smith"), ("👍", "👍"), ("<b>", "<b>"), ("。", ""),
])
def test_answers_typed_or_spoken_are_read_the_same(said, answer):
    assert parse(said).answer == answer
