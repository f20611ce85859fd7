"""Console pages for agents: list, create, edit, delete, and the playground.

Every page looks agents up through `_owned_agent`, so another user's agent is
a 404 exactly like one that does not exist. The playground page is rendered
here; its JavaScript (static/console/playground.js) calls the public
completions endpoint with a short-lived JWT from /console/token.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from agents import llm_config, services
from agents.forms import AgentForm
from agents.models import Agent


def _owned_agent(request, agent_id) -> Agent:
    return get_object_or_404(Agent, id=agent_id, owner=request.user)


@login_required
@require_GET
def agent_list(request):
    agents = Agent.objects.filter(owner=request.user).order_by("-created_at")
    return render(request, "agents/agent_list.html", {"agents": agents})


@login_required
@require_http_methods(["GET", "POST"])
def agent_create(request):
    form = AgentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        agent = services.agent_create(owner=request.user, **form.agent_fields())
        messages.success(request, f"Created “{agent.name}”. Ask it something in the playground.")
        return redirect("console:agent-playground", agent_id=agent.id)
    status = 400 if form.is_bound else 200
    return render(request, "agents/agent_form.html", {"form": form, "agent": None}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def agent_edit(request, agent_id):
    agent = _owned_agent(request, agent_id)
    form = AgentForm(request.POST or None, instance=agent)
    if request.method == "POST" and form.is_valid():
        services.agent_update(agent=agent, **form.agent_fields())
        messages.success(request, f"Saved “{agent.name}”.")
        return redirect("console:agent-edit", agent_id=agent.id)
    status = 400 if form.is_bound else 200
    return render(request, "agents/agent_form.html", {"form": form, "agent": agent}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def agent_delete(request, agent_id):
    """GET asks for confirmation; only the POST from that page deletes."""
    agent = _owned_agent(request, agent_id)
    if request.method == "POST":
        name = agent.name
        services.agent_delete(agent=agent)
        messages.success(request, f"Deleted “{name}” and its sessions.")
        return redirect("console:agents")
    return render(request, "agents/agent_confirm_delete.html", {"agent": agent, "sessions": agent.sessions.count()})


@login_required
@require_GET
def agent_playground(request, agent_id):
    agent = _owned_agent(request, agent_id)
    provider = agent.llm_provider or llm_config.default_provider_name()
    context = {
        "agent": agent,
        "provider": provider,
        "model": agent.llm_model or llm_config.default_model(provider),
        "token_minutes": settings.COMBO_CONSOLE_TOKEN_MINUTES,
    }
    return render(request, "agents/playground.html", context)
