"""Writes and authentication for accounts: API keys and bearer credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendExpiredToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts import keycache, keys
from accounts.models import ApiKey, User
from combo.errors import ComboError, ErrorCode


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    plain_key: str  # shown to the user once, never stored


@transaction.atomic
def api_key_create(*, owner: User, name: str, expires_at: datetime | None = None) -> CreatedApiKey:
    # The visible prefix is unique; on the rare clash, mint another key.
    for _ in range(5):
        plain = keys.generate()
        try:
            with transaction.atomic():
                api_key = ApiKey.objects.create(
                    owner=owner,
                    name=name,
                    prefix=keys.visible_prefix(plain),
                    key_hash=keys.hash_key(plain),
                    expires_at=expires_at,
                )
        except IntegrityError:
            continue
        return CreatedApiKey(api_key=api_key, plain_key=plain)
    raise ComboError(ErrorCode.CONFLICT, "Could not mint a unique key; try again.")


def api_keys_revoke(queryset) -> int:
    """Revoke the keys of `queryset` not revoked yet; how many were. Every revocation goes through here.

    A conditional update keeps the first revocation time under a race; it sends
    no signal, so the cached rows (accounts.keycache) are dropped here.
    """
    live = queryset.filter(revoked_at__isnull=True)
    prefixes = list(live.values_list("prefix", flat=True))
    if not prefixes:
        return 0
    count = live.update(revoked_at=timezone.now())
    keycache.forget(*prefixes)
    return count


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_keys_revoke(ApiKey.objects.filter(pk=api_key.pk))
        api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user, and the API key when one was used (else a JWT)."""

    user: User
    api_key: ApiKey | None

    @property
    def kind(self) -> str:
        return "api_key" if self.api_key else "jwt"


def _last_used_due(api_key: ApiKey, now) -> bool:
    # Not a write per request: at most one per key per resolution window.
    return api_key.last_used_at is None or now - api_key.last_used_at >= settings.API_KEY_LAST_USED_RESOLUTION


def api_keys_touch(api_keys: list[ApiKey]) -> None:
    """Set last_used_at on keys whose mark is due, in one statement (a race writes it once)."""
    now = timezone.now()
    due = {api_key.pk: api_key for api_key in api_keys if _last_used_due(api_key, now)}
    if not due:
        return
    window = settings.API_KEY_LAST_USED_RESOLUTION
    ApiKey.objects.filter(pk__in=list(due)).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - window)
    ).update(last_used_at=now)
    for api_key in due.values():
        api_key.last_used_at = now
    keycache.remember(*due.values())


def authenticate_api_key(plain: str) -> Principal:
    if not keys.is_well_formed(plain):
        raise ComboError(ErrorCode.CREDENTIAL_INVALID, "The API key is malformed or mistyped.")
    api_key = keycache.get(keys.visible_prefix(plain))
    principal = _check_api_key(plain, api_key)
    api_keys_touch([api_key])
    return principal


def _check_api_key(plain: str, api_key: ApiKey | None) -> Principal:
    """`plain` against the stored key with its prefix (None: no such key)."""
    if api_key is None or not keys.matches(plain, api_key.key_hash):
        raise ComboError(ErrorCode.CREDENTIAL_INVALID, "The API key is not valid.")
    if api_key.revoked_at is not None:
        raise ComboError(ErrorCode.CREDENTIAL_REVOKED)
    if api_key.expires_at is not None and api_key.expires_at <= timezone.now():
        raise ComboError(ErrorCode.CREDENTIAL_EXPIRED, "The API key has expired.")
    if not api_key.owner.is_active:
        raise ComboError(ErrorCode.CREDENTIAL_INVALID, "The API key's owner is deactivated.")
    return Principal(user=api_key.owner, api_key=api_key)


def authenticate_jwt(raw: str) -> Principal:
    try:
        token = AccessToken(raw)
    except TokenError as exc:
        if isinstance(exc.__cause__, TokenBackendExpiredToken) or "expired" in str(exc).lower():
            raise ComboError(ErrorCode.CREDENTIAL_EXPIRED, "The access token has expired; refresh it.") from None
        raise ComboError(ErrorCode.CREDENTIAL_INVALID, "The access token is not valid.") from None
    user_id = token.get(jwt_settings.USER_ID_CLAIM)
    user = User.objects.filter(**{jwt_settings.USER_ID_FIELD: user_id}).first() if user_id else None
    if user is None or not user.is_active:
        raise ComboError(ErrorCode.CREDENTIAL_INVALID, "The access token's user does not exist.")
    return Principal(user=user, api_key=None)


def _bearer_value(header: str) -> str:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        raise ComboError(
            ErrorCode.CREDENTIAL_INVALID, "Send the credential as 'Authorization: Bearer <key or token>'."
        )
    return value


def authenticate_bearer(header: str | None) -> Principal | None:
    """The one reading of `Authorization: Bearer ...` (DRF and the stream path share it).

    None when no header was sent; ComboError for anything sent but not valid.
    """
    if header is None or header == "":
        return None
    value = _bearer_value(header)
    if value.startswith(keys.KEY_PREFIX):
        return authenticate_api_key(value)
    return authenticate_jwt(value)


def authenticate_bearers(
    headers: list[str | None], *, defer_touch: bool = False
) -> list[Principal | ComboError | None]:
    """`authenticate_bearer` for many requests at once: one query for all their API keys.

    Each result is what `authenticate_bearer` returns for that header, or the
    ComboError it raises. With `defer_touch`, nothing is written: the caller
    passes the principals' keys to `api_keys_touch` with its own writes.
    """
    results: list[Principal | ComboError | None] = [None] * len(headers)
    wanted: dict[int, str] = {}
    for index, header in enumerate(headers):
        if header is None or header == "":
            continue
        try:
            value = _bearer_value(header)
            if not value.startswith(keys.KEY_PREFIX):
                results[index] = authenticate_jwt(value)
            elif not keys.is_well_formed(value):
                raise ComboError(ErrorCode.CREDENTIAL_INVALID, "The API key is malformed or mistyped.")
            else:
                wanted[index] = value
        except ComboError as exc:
            results[index] = exc
    if wanted:
        found = keycache.get_many(keys.visible_prefix(value) for value in wanted.values())
        checked: list[ApiKey] = []
        for index, value in wanted.items():
            api_key = found.get(keys.visible_prefix(value))
            try:
                results[index] = _check_api_key(value, api_key)
            except ComboError as exc:
                results[index] = exc
                continue
            checked.append(api_key)
        if not defer_touch:
            api_keys_touch(checked)
    return results


def user_create(*, username: str, password: str | None = None, email: str = "", is_staff: bool = False) -> User:
    user = User(username=username, email=email, is_staff=is_staff)
    if password:
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    return user


def access_token_issue(*, user: User, lifetime: timedelta) -> AccessToken:
    """A JWT access token for `user` that lives `lifetime` (the console's page JavaScript uses one)."""
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=lifetime)
    return token
