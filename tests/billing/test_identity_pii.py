"""Personal data: masks, encryption at rest, a stable lookup HMAC, and no plaintext ID or
phone number anywhere in the database."""
from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from billing.members import bind_dependent, member_by_id_number
from billing.pii import PiiCipher, mask_id_number, mask_phone
from storage.models import Base, Member
from helpers import billed_visit, enrol, pay_in_full

KEY = "test-secret-key-0123456789abcdef"


def test_masks():
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_id_number("12345") == "*****"
    assert mask_phone("12345") == "*****"


def test_encryption_round_trip_with_a_fresh_nonce_each_time():
    cipher = PiiCipher(KEY)
    first, second = cipher.encrypt("11010519491231002X"), cipher.encrypt("11010519491231002X")
    assert first != second
    assert "11010519491231002X" not in first
    assert cipher.decrypt(first) == cipher.decrypt(second) == "11010519491231002X"
    with pytest.raises(InvalidTag):
        PiiCipher("another-secret-key-0123456789").decrypt(first)


def test_lookup_hmac_is_stable_and_keyed():
    cipher = PiiCipher(KEY)
    digest = cipher.lookup("13812345678")
    assert digest == PiiCipher(KEY).lookup("13812345678")
    assert len(digest) == 64 and "13812345678" not in digest
    assert digest != cipher.lookup("13812345679")
    assert digest != PiiCipher("another-secret-key-0123456789").lookup("13812345678")


def test_a_short_key_is_refused():
    with pytest.raises(ValueError):
        PiiCipher("short")


async def test_database_holds_no_plaintext_id_or_phone(make_core):
    core = await make_core("beijing-shijingshan")
    people = {"110105198503120012": "13812345678", "11010819920709006X": "15987654321"}
    payer_id = None
    for id_number, phone in people.items():
        payer_id = await enrol(core, id_number, phone=phone, openid=f"o-{id_number[-4:]}")
    elder = "110108195203040075"
    await bind_dependent(core, payer_id, "parent", "刘桂兰", elder)
    await pay_in_full(core, await billed_visit(core, elder, 8800))

    secrets = [*people, elder, *people.values()]
    async with core.db.transaction() as session:
        for table in Base.metadata.sorted_tables:
            for row in await session.execute(select(table)):
                for value in row:
                    text = str(value)
                    assert not any(secret in text for secret in secrets), f"plaintext in {table.name}: {text}"
        stored = await session.run_sync(member_by_id_number, core, "11010819920709006X")
        assert core.pii.decrypt(stored.id_number_enc) == "11010819920709006X"
        assert core.pii.decrypt(stored.phone_enc) == "15987654321"
        assert stored.phone_hmac == core.pii.lookup("15987654321")
        assert await session.scalar(select(Member.phone_enc).where(Member.id_number_hmac == core.pii.lookup(elder))) is None
