"""API keys and tokens: managed with a JWT (POST /v1/auth/token), never with an API key."""

from datetime import UTC, datetime, timedelta

import pytest

from combo_sdk import ApiKey, AuthenticationError, ComboAgent, PermissionDeniedError


@pytest.fixture
def signed_in(live):
    with ComboAgent(api_key=live.jwt(), base_url=live.base_url) as client:
        yield client


def test_a_password_gets_a_jwt_pair_that_refreshes(live):
    with ComboAgent(base_url=live.base_url, api_key=None) as anonymous:
        token = anonymous.auth.token(username=live.username, password=live.password)
        assert token.access and token.refresh and not token.access.startswith("ragflow-")
        renewed = anonymous.auth.refresh(refresh=token.refresh)
        assert renewed.access


def test_a_jwt_creates_lists_and_revokes_keys(live, signed_in):
    expires = datetime.now(UTC) + timedelta(days=30)
    created = signed_in.api_keys.create(name="deploy bot", expires_at=expires)
    assert isinstance(created, ApiKey)
    assert created.key.startswith("ragflow-") and created.prefix and created.key.startswith(created.prefix)
    assert created.status == "active" and created.expires_at

    listed = {k.id: k for k in signed_in.api_keys.list(limit=1)}  # pages of one
    assert created.id in listed and listed[created.id].key is None  # shown once, never listed
    assert signed_in.api_keys.retrieve(created.id).name == "deploy bot"

    # The new key works, then stops working once revoked.
    with ComboAgent(api_key=created.key, base_url=live.base_url) as bot:
        list(bot.agents.list())
        revoked = signed_in.api_keys.revoke(created.id)
        assert revoked.status == "revoked" and revoked.revoked_at
        with pytest.raises(AuthenticationError) as caught:
            list(bot.agents.list())
        assert caught.value.code == 10012


def test_an_api_key_may_not_mint_keys(client):
    with pytest.raises(PermissionDeniedError) as caught:
        client.api_keys.create(name="escalation")
    assert caught.value.code == 10031


def test_the_jwt_sees_the_same_agents_as_the_key(signed_in, client, agent):
    assert signed_in.agents.retrieve(agent.id).id == agent.id
