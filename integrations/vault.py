"""Webhook secrets: how they are made and how they are kept at rest.

HMAC needs the plain secret, so it cannot be hashed like an API key; it is
encrypted with Fernet instead. The Fernet key comes from
COMBO_WEBHOOK_ENCRYPTION_KEY when set, else from SECRET_KEY, in both cases
through HKDF so that neither value is used directly as a key. Secrets written
under the SECRET_KEY derivation stay readable after an explicit key is set
(MultiFernet tries each key), so an operator can introduce one at any time.
"""

from __future__ import annotations

import base64
import functools
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
HINT_CHARS = 4

_HKDF_INFO = b"combo webhook secrets v1"


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted: the encryption key changed."""


def generate_secret() -> str:
    """A new secret: the prefix and 32 random bytes, URL-safe base64 (49 characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def hint(secret: str) -> str:
    """The last few characters, for people to tell secrets apart (never enough to sign)."""
    return secret[-HINT_CHARS:]


def _derive(material: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(material.encode())
    return Fernet(base64.urlsafe_b64encode(key))


@functools.cache
def _fernet(explicit: str | None, secret_key: str) -> MultiFernet:
    keys = [_derive(explicit)] if explicit else []
    keys.append(_derive(secret_key))
    return MultiFernet(keys)


def _current() -> MultiFernet:
    # Keyed on the settings' values, so override_settings in tests takes effect.
    return _fernet(settings.COMBO_WEBHOOK_ENCRYPTION_KEY, settings.SECRET_KEY)


def encrypt(secret: str) -> str:
    return _current().encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A webhook secret cannot be decrypted: COMBO_WEBHOOK_ENCRYPTION_KEY or SECRET_KEY changed. "
            "Restore the old key or rotate the webhook's secret."
        ) from None
