"""The console's API page and its Postman collection download.

The API page fills its samples with this deployment's base URL (from the
request, so it is right behind a proxy too) and the signed-in user's real
agent id; it never shows a key, only where to make one.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agents.models import Agent
from combo.postman import collection_for_request

# API.md's defaults; a deployment's own ceilings (settings.RATE_LIMITS, once
# rate limiting is configured there) take their place.
_DEFAULT_RATE_LIMITS = {"completions": 60, "uploads": 10, "default": 300}
_RATE_LIMIT_ROWS = (
    ("completions", "Completions", "POST /v1/combo/agents/{agent_id}/completions"),
    ("uploads", "File uploads", "POST /v1/combo/files"),
    ("default", "Everything else", None),
)

POSTMAN_FILENAME = "combo.postman_collection.json"


def rate_limit_rows() -> list[dict]:
    limits = {**_DEFAULT_RATE_LIMITS, **getattr(settings, "RATE_LIMITS", {})}
    return [
        {"family": label, "operations": operations, "per_minute": limits[key]}
        for key, label, operations in _RATE_LIMIT_ROWS
    ]


@login_required
@require_GET
def api_page(request):
    agents = list(Agent.objects.filter(owner=request.user).order_by("-created_at").only("id", "name"))
    chosen = next((a for a in agents if str(a.id) == request.GET.get("agent")), agents[0] if agents else None)
    context = {
        "base_url": request.build_absolute_uri("/v1"),
        "agents": agents,
        "agent": chosen,
        "agent_id": str(chosen.id) if chosen else "<agent_id>",
        "rate_limits": rate_limit_rows(),
        "postman_filename": POSTMAN_FILENAME,
    }
    return render(request, "combo/api_page.html", context)


@login_required
@require_GET
def postman_collection(request):
    """The Postman v2.1 collection, generated now from the live OpenAPI document."""
    collection = collection_for_request(request)
    response = HttpResponse(
        json.dumps(collection, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{POSTMAN_FILENAME}"'
    return response
