"""The OpenAPI document tells clients about the limits; django-ratelimit's own checks run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django_ratelimit.checks import check_caches
from openapi_spec_validator import validate

from combo import ratelimit

RATE_HEADERS = {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"}


@pytest.fixture
def document(client, db):
    response = client.get("/v1/openapi.json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_every_response_documents_the_rate_limit_headers_and_every_operation_its_429(document):
    validate(document)
    headers = document["components"]["headers"]
    assert RATE_HEADERS | {"Retry-After"} <= set(headers)
    assert headers["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}

    operations = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            operations += 1
            responses = operation["responses"]
            assert "429" in responses, (method, path)
            assert "Retry-After" in responses["429"]["headers"], (method, path)
            for status, response in responses.items():
                assert set(response["headers"]) >= RATE_HEADERS, (method, path, status)
    assert operations > 0


def test_the_description_lists_the_families_and_this_deployments_ceilings(document):
    description = document["info"]["description"]
    assert "## Rate limits" in description
    for family in ratelimit.FAMILIES:
        assert f"| {family} |" in description
    assert "| completions | POST /v1/combo/agents/{agent_id}/completions | 60 |" in description


def test_the_family_table_matches_the_overviews_routes():
    assert ratelimit.operation_family("POST", "/v1/combo/agents/abc/completions") == (
        "completions",
        {"agent_id": "abc"},
    )
    assert ratelimit.operation_family("GET", "/v1/combo/agents/abc/completions")[0] == "default"
    assert ratelimit.operation_family("POST", "/v1/combo/files")[0] == "uploads"
    assert ratelimit.operation_family("GET", "/v1/combo/files")[0] == "default"
    assert ratelimit.operation_family("POST", "/v1/combo/files/abc")[0] == "default"
    assert ratelimit.operation_family("POST", "/v1/auth/token")[0] == "login"
    assert ratelimit.operation_family("POST", "/v1/auth/token/refresh")[0] == "default"
    assert ratelimit.operation_family("post", "/v1/integrations/webhooks/w1/events") == (
        "webhook",
        {"webhook_id": "w1"},
    )
    assert ratelimit.operation_family("POST", "/v1/integrations/webhooks")[0] == "default"
    assert ratelimit.operation_family("DELETE", "/v1/combo/agents/abc")[0] == "default"


def test_django_ratelimit_is_installed_and_its_locmem_complaints_are_silenced_only_for_locmem():
    assert "django_ratelimit" in settings.INSTALLED_APPS
    ids = {message.id for message in run_checks(tags=["caches"])}
    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        assert ids == {"django_ratelimit.E003", "django_ratelimit.W001"}
        assert set(settings.SILENCED_SYSTEM_CHECKS) >= ids
    else:  # REDIS_URL: django-redis, which django-ratelimit supports without complaint
        assert settings.CACHES["default"]["BACKEND"] == "django_redis.cache.RedisCache"
        assert not {i for i in ids if i.startswith("django_ratelimit")}
        assert not any(i.startswith("django_ratelimit") for i in getattr(settings, "SILENCED_SYSTEM_CHECKS", []))


def test_django_redis_passes_django_ratelimits_checks(settings):
    settings.CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:6379/0"}}
    assert check_caches(None) == []


def test_with_redis_url_the_product_settings_pass_the_checks_with_nothing_silenced(tmp_path):
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0", "COMBO_DATA_DIR": str(tmp_path),
           "DJANGO_SETTINGS_MODULE": "combo.settings"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--tag", "caches"],
        cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues (0 silenced)" in result.stdout
