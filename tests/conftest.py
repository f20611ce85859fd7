"""The cast, built in code:

- alice: an ordinary user with an API key and a JWT; owns her objects.
- bob: another ordinary user; must never see alice's objects (nor she his).
- admin: a superuser, for Django admin pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.core.cache import cache
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import services
from accounts.models import User
from combo.cachebreaker import cache_breaker


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counts live in the cache; every test starts with full budgets and its breaker closed."""
    cache_breaker.reset()
    cache.clear()
    yield
    cache_breaker.reset()
    cache.clear()


@dataclass
class Actor:
    user: User
    api_key: str
    jwt: str

    @property
    def key_auth(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.api_key}"}

    @property
    def jwt_auth(self) -> dict:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.jwt}"}


def make_actor(username: str, **extra) -> Actor:
    user = services.user_create(username=username, password="correct horse battery", **extra)
    key = services.api_key_create(owner=user, name=f"{username}'s key").plain_key
    return Actor(user=user, api_key=key, jwt=str(RefreshToken.for_user(user).access_token))


@pytest.fixture
def alice(db) -> Actor:
    return make_actor("alice", email="alice@example.com")


@pytest.fixture
def bob(db) -> Actor:
    return make_actor("bob", email="bob@example.com")


@pytest.fixture
def admin_user(db) -> User:
    user = services.user_create(username="admin", password="admin pass 123", is_staff=True)
    user.is_superuser = True
    user.save()
    return user


class Api:
    """Django's test client speaking JSON, returning (status, envelope, response)."""

    def __init__(self, client):
        self.client = client

    def call(self, method: str, path: str, body=None, *, auth: dict | None = None, raw: bytes | None = None,
             content_type: str = "application/json", **headers):
        kwargs = dict(auth or {}, **headers)
        if raw is not None:
            kwargs["data"] = raw
            kwargs["content_type"] = content_type
        elif body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["content_type"] = content_type
        response = getattr(self.client, method.lower())(path, **kwargs)
        if getattr(response, "streaming", False):
            response.streamed = b"".join(response)  # SSE: Django drains an async stream in one loop
            return response.status_code, None, response
        try:
            envelope = json.loads(response.content)
        except ValueError:
            envelope = None
        return response.status_code, envelope, response

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


@pytest.fixture
def api(client) -> Api:
    return Api(client)
