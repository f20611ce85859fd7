"""Rate-limit test helpers: a frozen clock, ceilings to taste, and the stand-in paths."""

from __future__ import annotations

import time
import uuid

import pytest
import time_machine

from combo import ratelimit

AGENT_ID = str(uuid.UUID("0b6c5c1e-2f57-4c1e-9d1a-6f0e7b8a9c10"))
COMPLETIONS = f"/v1/combo/agents/{AGENT_ID}/completions"
FILES = "/v1/combo/files"
PING = "/v1/combo/ping"


@pytest.fixture
def clock():
    """Time stands still at a whole second near now; move it with clock.shift(seconds).

    Near now, so the cast's JWTs are still valid; a whole second, so a window's
    remaining time is exactly computable.
    """
    with time_machine.travel(float(int(time.time()) + 1), tick=False) as traveller:
        yield traveller


@pytest.fixture
def limits(settings):
    """Set some ceilings (per minute) for one test: limits(completions=3)."""

    def set_limits(**ceilings):
        settings.RATE_LIMITS = {**settings.RATE_LIMITS, **ceilings}

    return set_limits


@pytest.fixture(autouse=True)
def _quiet_warning_state():
    """The cache-down warning is rate limited per process; each test starts unwarned."""
    ratelimit.warn_cache_down.reset()
    yield
    ratelimit.warn_cache_down.reset()
