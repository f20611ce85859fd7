"""The API key format: `ragflow-<40 random base62><6 base62 CRC32>`.

40 characters from a 62-letter alphabet carry 238 bits of randomness; the
stored, visible prefix shows 6 of them, so 202 secret bits stay hidden. The last
six characters are the CRC32 of the random part in base62 (the scheme GitHub's
tokens use), so a mistyped or invented key is refused without a database query
and secret scanners can tell a real key from noise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

KEY_PREFIX = "ragflow-"
# base62 in the order GitHub's checksum and the scanners that verify it use
# (0-9, A-Z, a-z); string.ascii_letters would put a-z first and give other digits.
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
RANDOM_LENGTH = 40
CHECKSUM_LENGTH = 6
VISIBLE_LENGTH = 6  # random characters kept in the stored prefix (34 stay secret: 202 bits)
_BODY = re.compile(f"[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}")


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(ALPHABET[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def generate() -> str:
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    return f"{KEY_PREFIX}{random_part}{checksum(random_part)}"


def is_well_formed(key: str) -> bool:
    """Shape and checksum only: no database, constant work."""
    if not key.startswith(KEY_PREFIX):
        return False
    body = key[len(KEY_PREFIX):]
    if not _BODY.fullmatch(body):  # one C call: this runs for every request with a key
        return False
    return hmac.compare_digest(checksum(body[:RANDOM_LENGTH]), body[RANDOM_LENGTH:])


def visible_prefix(key: str) -> str:
    return key[: len(KEY_PREFIX) + VISIBLE_LENGTH]


def hash_key(key: str) -> str:
    # The key is 238 random bits, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
