"""Personal data at rest: AES-GCM encryption plus a keyed HMAC for lookups, and masking.

Both keys are derived from the programme's secret key with HKDF, each for one purpose.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"xinyi", info=purpose).derive(secret)


class PiiCipher:
    def __init__(self, secret_key: str | bytes) -> None:
        secret = secret_key.encode() if isinstance(secret_key, str) else secret_key
        if len(secret) < 16:
            raise ValueError("the secret key must be at least 16 bytes")
        self._aead = AESGCM(_derive(secret, b"pii-encryption"))
        self._lookup_key = _derive(secret, b"pii-lookup")
        self._secret = secret

    def derive_key(self, purpose: bytes) -> bytes:
        """A 32-byte key of the programme's secret for one other purpose (the console's session cookie)."""
        return _derive(self._secret, purpose)

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, plaintext.encode(), None)).decode()

    def decrypt(self, token: str) -> str:
        raw = base64.b64decode(token)
        return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], None).decode()

    def lookup(self, value: str) -> str:
        """A stable keyed digest: equal inputs meet in a unique index, nothing can be read back."""
        return hmac.new(self._lookup_key, value.encode(), hashlib.sha256).hexdigest()


def mask_id_number(id_number: str) -> str:
    """`110105********002X`: the region and the last four stay, the birth date goes."""
    if len(id_number) < 10:
        return "*" * len(id_number)
    return id_number[:6] + "*" * (len(id_number) - 10) + id_number[-4:]


def mask_phone(phone: str) -> str:
    """`138****5678`."""
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


_ID_NUMBER_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
# With or without the country code an SMS provider writes before it (+8613912345678).
_PHONE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z])(\+?86)?(1[3-9][0-9]{9})(?![0-9A-Za-z])")


def mask_numbers(text: str) -> str:
    """Every ID and mobile number inside free text (a log line, an error), masked."""
    text = _ID_NUMBER_IN_TEXT.sub(lambda m: mask_id_number(m.group().upper()), text)
    return _PHONE_IN_TEXT.sub(lambda m: (m.group(1) or "") + mask_phone(m.group(2)), text)
