"""GET /v1/health: is the database, the cache and the channel layer answering?"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from combo import eventloop, shutdown
from combo.api.envelope import error_body
from combo.cachebreaker import cache_breaker
from combo.dbpool import after_database_failure
from combo.errors import DATABASE_UNAVAILABLE_ERRORS, ErrorCode

logger = logging.getLogger("combo.health")


def _check_database() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DATABASE_UNAVAILABLE_ERRORS:
        after_database_failure()  # as a request would: the pool's dead connections go at once
        raise


def _check_cache() -> None:
    """Always asks the cache, whatever its breaker says (combo.cachebreaker), and tells the breaker."""
    key = f"health:{uuid.uuid4().hex}"
    try:
        cache.set(key, "1", 5)
        if cache.get(key) != "1":
            raise RuntimeError("cache did not return what was written")
        cache.delete(key)
    except Exception as exc:
        cache_breaker.failed(exc)
        raise
    cache_breaker.succeeded()


def _check_channel_layer() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")

    timeout = settings.COMBO_HEALTH_TIMEOUT_SECONDS

    async def roundtrip():
        # Bounded: channels-redis has no socket timeout of its own, and a hung
        # Redis would hold the check (and the prober waiting on it) for seconds.
        async with asyncio.timeout(timeout):
            channel = await layer.new_channel()
            await layer.send(channel, {"type": "health.ping"})
            message = await layer.receive(channel)
        if message.get("type") != "health.ping":
            raise RuntimeError("channel layer returned a different message")

    # On the process's one event loop (the server's), where the layer's
    # per-loop state lives: not a fresh loop per request (combo.eventloop).
    # The wait counts from here, so a loop too busy to start the round trip
    # at once is inside the same bound.
    eventloop.run(roundtrip, timeout)


CHECKS = {"database": _check_database, "cache": _check_cache, "channel_layer": _check_channel_layer}


def run_checks() -> dict[str, dict]:
    results = {}
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
            results[name] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
        except Exception as exc:  # noqa: BLE001 - a health check reports every failure, whatever its kind
            # The text (hosts, addresses) goes to the server's log only, never into the answer.
            logger.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
            results[name] = {"ok": False, "error": type(exc).__name__}
    return results


_CheckSerializer = inline_serializer(
    "HealthCheck",
    {
        "ok": serializers.BooleanField(),
        "latency_ms": serializers.FloatField(required=False),
        "error": serializers.CharField(required=False),
    },
)


class HealthView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    extra_error_statuses = ["503"]  # 20002: a dependency is down
    answers_without_limits = True  # also when the rate-limit store is down and limits fail closed

    @extend_schema(
        operation_id="health",
        responses={
            200: inline_serializer(
                "Health",
                {
                    "status": serializers.CharField(),
                    "database_vendor": serializers.CharField(),
                    "checks": inline_serializer(
                        "HealthChecks",
                        {name: _CheckSerializer for name in CHECKS},
                    ),
                },
            )
        },
        auth=[],
    )
    def get(self, request):
        """Reports the database, the cache and the channel layer; 503 when one is down or the process is stopping."""
        if shutdown.draining:
            # Stopping (SIGTERM): a load balancer should send new requests to another process now.
            body = error_body(
                ErrorCode.SHUTTING_DOWN, "This server process is shutting down.", request.request_id,
                extra={"status": "draining", "database_vendor": connection.vendor},
            )
            response = Response(body, status=503, headers={"Retry-After": "1"})
            response.combo_envelope = True
            return response
        checks = run_checks()
        data = {
            "status": "ok" if all(c["ok"] for c in checks.values()) else "degraded",
            "database_vendor": connection.vendor,
            "checks": checks,
        }
        if data["status"] == "ok":
            return Response(data)
        down = ", ".join(name for name, check in checks.items() if not check["ok"])
        body = error_body(
            ErrorCode.SERVICE_UNAVAILABLE, f"A dependency is down: {down}.", request.request_id, extra=data
        )
        response = Response(body, status=503)
        response.combo_envelope = True
        return response
