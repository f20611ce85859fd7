"""Webhook signatures: `X-Combo-Signature`, for integrators on either end.

Two forms (API.md, Authentication):

- `sha256=<hex>`: lowercase hex of HMAC-SHA256(secret, raw body). Every
  delivery Combo sends carries it, and every inbound callback accepts it.
- `t=<unix seconds>,sha256=<hex>`: HMAC-SHA256(secret, "<t>.<raw body>"),
  for senders that can add replay protection; a webhook may require it.

The HMAC key is the whole secret string as shown (UTF-8), `whsec_` prefix
included. Verify against the raw body bytes exactly as received, before any
JSON parsing; comparisons are constant-time.

    from combo_sdk import signatures
    if not signatures.verify(secret, request.body, request.headers["X-Combo-Signature"]):
        return 401
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, List, Optional, Tuple, Union

from .errors import SignatureVerificationError

__all__ = ["HEADER", "DEFAULT_TOLERANCE", "sign", "verify", "construct_event"]

HEADER = "X-Combo-Signature"
DEFAULT_TOLERANCE = 300  # seconds a timestamped signature stays acceptable, either way

Bytesish = Union[bytes, bytearray, memoryview, str]


def _bytes(value: Bytesish) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected bytes or str, not {type(value).__name__}")


def _digest(secret: Bytesish, message: bytes) -> str:
    return hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def sign(secret: Bytesish, body: Bytesish, timestamp: Optional[int] = None) -> str:
    """The `X-Combo-Signature` value for `body`: `sha256=<hex>`, or with `timestamp`
    (unix seconds) the timestamped form `t=<timestamp>,sha256=<hex>`."""
    raw = _bytes(body)
    if timestamp is None:
        return "sha256=" + _digest(secret, raw)
    t = int(timestamp)
    return f"t={t},sha256=" + _digest(secret, str(t).encode("ascii") + b"." + raw)


def _parse(header: str) -> Tuple[Optional[int], List[str]]:
    """(timestamp or None, sha256 hex values) from a header; raises on a malformed one."""
    timestamp: Optional[int] = None
    signatures: List[str] = []
    for part in header.split(","):
        key, eq, value = part.strip().partition("=")
        key, value = key.strip().lower(), value.strip()
        if not eq or not value:
            raise SignatureVerificationError(f"Malformed {HEADER} header: expected sha256=<hex>.")
        if key == "t":
            if not value.isdigit() or timestamp is not None:
                raise SignatureVerificationError(f"Malformed {HEADER} header: bad timestamp.")
            timestamp = int(value)
        elif key == "sha256":
            signatures.append(value.lower())
        # Unknown keys (a future scheme such as v2=) are ignored.
    if not signatures:
        raise SignatureVerificationError(f"Malformed {HEADER} header: no sha256= signature.")
    return timestamp, signatures


def _check(
    secret: Bytesish,
    body: Bytesish,
    signature_header: Optional[str],
    tolerance: Optional[float],
    now: Optional[float],
) -> None:
    if not signature_header or not isinstance(signature_header, str):
        raise SignatureVerificationError(f"The {HEADER} header is missing.")
    timestamp, signatures = _parse(signature_header)
    raw = _bytes(body)
    if timestamp is None:
        expected = _digest(secret, raw)
    else:
        if tolerance is not None:
            current = time.time() if now is None else now
            if abs(current - timestamp) > tolerance:
                raise SignatureVerificationError("The signature timestamp is outside the tolerance window.")
        expected = _digest(secret, str(timestamp).encode("ascii") + b"." + raw)
    # Compare with every value (a sender in the middle of a rotation may send
    # two), always all of them, in constant time each.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(candidate.encode("ascii", "replace"), expected.encode("ascii"))
    if not matched:
        raise SignatureVerificationError("The signature does not match the body.")


def verify(
    secret: Bytesish,
    body: Bytesish,
    signature_header: Optional[str],
    tolerance: Optional[float] = DEFAULT_TOLERANCE,
    *,
    now: Optional[float] = None,
) -> bool:
    """True when `signature_header` is a valid signature of the raw `body` with `secret`.

    Accepts both forms. A timestamped signature more than `tolerance` seconds
    old or ahead is refused (`tolerance=None` skips that check); the plain form
    carries no time, so replay protection is then the receiver's (the signed
    delivery JSON holds its id and creation time). Never raises for a bad
    signature; use `construct_event()` to learn why one was refused.
    """
    try:
        _check(secret, body, signature_header, tolerance, now)
    except SignatureVerificationError:
        return False
    return True


def construct_event(
    secret: Bytesish,
    body: Bytesish,
    signature_header: Optional[str],
    tolerance: Optional[float] = DEFAULT_TOLERANCE,
    *,
    now: Optional[float] = None,
) -> Any:
    """Verify, then parse the body as JSON; raises SignatureVerificationError with the reason."""
    _check(secret, body, signature_header, tolerance, now)
    try:
        return json.loads(_bytes(body).decode("utf-8"))
    except ValueError as exc:
        raise SignatureVerificationError(f"The signed body is not JSON: {exc}") from None
