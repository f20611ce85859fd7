"""Console fixtures: the shared cast (tests/conftest.py), signed in through the session."""

from __future__ import annotations

import pytest
from django.test import Client

from agents import services as agent_services


@pytest.fixture
def alice_client(client, alice) -> Client:
    client.force_login(alice.user)
    return client


@pytest.fixture
def bob_agent(bob):
    return agent_services.agent_create(owner=bob.user, name="Bob's private agent", instructions="bob only")


@pytest.fixture
def alice_agent(alice):
    return agent_services.agent_create(owner=alice.user, name="Alice's helper", instructions="Be brief.")
