"""X-Combo-Signature: making and checking webhook signatures (API.md, Authentication).

Two forms of the header are accepted:

- `sha256=<hex>`: lowercase hex of HMAC-SHA256(secret, raw body). Every
  delivery Combo sends uses this form, as GitHub does.
- `t=<unix seconds>,sha256=<hex>`: the HMAC is over `"<t>.<body>"`, and `t`
  must be within a tolerance of now (Stripe's scheme), so a captured request
  cannot be replayed later. A webhook may require this form.

The HMAC key is the whole secret string as shown, UTF-8 encoded. Digests are
compared with hmac.compare_digest against every candidate secret (the current
one and, during a rotation's grace period, the previous one).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from combo.errors import ComboError, ErrorCode

HEADER = "X-Combo-Signature"
PLAIN = "plain"
TIMESTAMPED = "timestamped"

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_UNIX = re.compile(r"^[0-9]{1,12}$")
# At most this many sha256= values in one header (senders in the middle of a rotation may send two).
_MAX_DIGESTS = 4


def _digest(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes) -> str:
    """The plain form: `sha256=<hex of HMAC(secret, body)>`."""
    return f"sha256={_digest(secret, body)}"


def sign_timestamped(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The timestamped form: `t=<unix>,sha256=<hex of HMAC(secret, "<t>.<body>")>`."""
    t = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={t},sha256={_digest(secret, f'{t}.'.encode() + body)}"


@dataclass(frozen=True)
class ParsedSignature:
    form: str  # PLAIN or TIMESTAMPED
    digests: tuple[str, ...]
    timestamp: int | None


@dataclass(frozen=True)
class Verified:
    form: str
    # Index into the candidate secrets that matched (0 = the current secret).
    secret_index: int


def parse(header: str | None) -> ParsedSignature:
    """The header's parts, or ComboError SIGNATURE_MISSING / SIGNATURE_MALFORMED."""
    if header is None or not header.strip():
        raise ComboError(ErrorCode.SIGNATURE_MISSING)
    timestamp: int | None = None
    digests: list[str] = []
    malformed = ComboError(
        ErrorCode.SIGNATURE_MALFORMED,
        "X-Combo-Signature must be 'sha256=<64 hex digits>' or 't=<unix seconds>,sha256=<64 hex digits>'.",
    )
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise malformed
        key, value = key.strip().lower(), value.strip()
        if key == "sha256" and _HEX.match(value):
            digests.append(value.lower())
        elif key == "t" and timestamp is None and _UNIX.match(value):
            timestamp = int(value)
        else:
            raise malformed
    if not digests or len(digests) > _MAX_DIGESTS:
        raise malformed
    return ParsedSignature(
        form=TIMESTAMPED if timestamp is not None else PLAIN, digests=tuple(digests), timestamp=timestamp
    )


def verify(
    *,
    secrets: list[str],
    body: bytes,
    header: str | None,
    require_timestamp: bool = False,
    tolerance: int = 300,
    now: float | None = None,
) -> Verified:
    """Check `header` against `body` for any of `secrets`; raise the matching ComboError if not.

    Order: missing, malformed, form required, timestamp window, then the digest,
    so a stale but correctly signed request says "stale", not "mismatch".
    """
    parsed = parse(header)
    if require_timestamp and parsed.form != TIMESTAMPED:
        raise ComboError(ErrorCode.SIGNATURE_TIMESTAMP_REQUIRED)
    if parsed.timestamp is not None:
        current = time.time() if now is None else now
        if abs(current - parsed.timestamp) > tolerance:
            raise ComboError(
                ErrorCode.SIGNATURE_TIMESTAMP_OUT_OF_WINDOW,
                f"The signature timestamp is more than {tolerance} seconds from the server's clock.",
            )
        message = f"{parsed.timestamp}.".encode() + body
    else:
        message = body
    matched: int | None = None
    for index, secret in enumerate(secrets):
        expected = _digest(secret, message)
        for digest in parsed.digests:
            # Every comparison runs, so timing does not tell which secret matched.
            if hmac.compare_digest(expected, digest) and matched is None:
                matched = index
    if matched is None:
        raise ComboError(ErrorCode.SIGNATURE_MISMATCH)
    return Verified(form=parsed.form, secret_index=matched)
