"""Console pages for agents: list, create, edit, delete, the playground, and knowledge files.

Every page looks agents and files up through `_owned_agent` / `_owned_file`,
so another user's agent or file is a 404 exactly like one that does not exist.
The playground page is rendered here; its JavaScript
(static/console/playground.js) calls the public completions endpoint with a
short-lived JWT from /console/token. Uploads work the same way
(static/console/files.js posts to /v1/combo/files); attaching, detaching and
deleting files are form POSTs to these views, through the service layer.
The edit form carries the version of the agent it was opened on, and a save
over a change made meanwhile (the API, another tab) is refused, with the
saved values shown (combo.editversions).
The create form carries a one-time form token kept in the session (as the
API-key and webhook create forms do), so a double click, a retried POST or a
reload makes one agent, not two.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from agents import llm_config, services
from agents.forms import AgentForm, AttachFileForm
from agents.knowledge import services as knowledge_services
from agents.models import Agent, KnowledgeFile
from combo import editversions, formtokens
from combo.errors import ComboError, ErrorCode

# Stands for a file's id in URLs the page JavaScript fills in for new uploads.
_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


# --- One-time form tokens (create) -------------------------------------------------

_FORM_TOKENS = "agent_form_tokens"


def _owned_agent(request, agent_id) -> Agent:
    return get_object_or_404(Agent, id=agent_id, owner=request.user)


def _owned_file(request, file_id) -> KnowledgeFile:
    return get_object_or_404(KnowledgeFile, id=file_id, owner=request.user)


def _upload_context(request, agent: Agent | None) -> dict:
    """What static/console/files.js needs: where to get a token and where to upload."""
    return {
        "token_url": reverse("console:token"),
        "files_url": reverse("file-list"),
        "agent_id": str(agent.id) if agent else "",
        "max_bytes": settings.COMBO_MAX_UPLOAD_BYTES,
        "login_url": f"{reverse('console:login')}?{urlencode({'next': request.get_full_path()})}",
        "id_placeholder": _ID_PLACEHOLDER,
    }


def _render_edit(
    request, agent: Agent, form: AgentForm, attach_form: AttachFileForm | None = None, *,
    version: str | None = None, conflict: list | None = None, status=200,
):
    """The edit page; `version`: the agent's edit version the form carries (default: as stored now)."""
    files = agent.files.order_by("created_at", "id")
    attach_form = attach_form or AttachFileForm(agent=agent)
    context = {
        "form": form,
        "agent": agent,
        "edit_version": editversions.of(AgentForm.edited_values(agent)) if version is None else version,
        "conflict": conflict,
        "files": files,
        "attach_form": attach_form,
        "upload": _upload_context(request, agent),
    }
    return render(request, "agents/agent_form.html", context, status=status)


@login_required
@require_GET
def agent_list(request):
    agents = Agent.objects.filter(owner=request.user).order_by("-created_at")
    return render(request, "agents/agent_list.html", {"agents": agents})


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def agent_create(request):
    if request.method == "GET":
        context = {"form": AgentForm(), "agent": None, "form_token": formtokens.issue(request, _FORM_TOKENS)}
        return render(request, "agents/agent_form.html", context)

    sent = formtokens.Submission(
        request, _FORM_TOKENS, back="console:agents",
        note="That form was already sent, and its agent is in the list below.",
    )
    form = AgentForm(request.POST)
    if refused := sent.refuse_repeat(form):
        return refused
    if not form.is_valid():
        context = {"form": form, "agent": None, "form_token": sent.token}
        return render(request, "agents/agent_form.html", context, status=400)
    with sent.acting():
        agent = services.agent_create(owner=request.user, **form.agent_fields())
    messages.success(request, f"Created “{agent.name}”. Ask it something in the playground.")
    return redirect("console:agent-playground", agent_id=agent.id)


@login_required
@require_http_methods(["GET", "POST"])
def agent_edit(request, agent_id):
    agent = _owned_agent(request, agent_id)
    form = AgentForm(request.POST or None, instance=agent)
    # The version of the agent the page was opened on travels with the form (combo.editversions).
    version = request.POST.get(editversions.FIELD, "") if form.is_bound else None
    conflict = None
    status = 400
    if request.method == "POST" and form.is_valid():
        precondition = editversions.unchanged_since(version, AgentForm.edited_values)
        try:
            services.agent_update(agent=agent, precondition=precondition, **form.agent_fields())
        except editversions.EditConflict as exc:
            # Changed meanwhile: nothing saved; the form keeps the input, now against the agent as saved.
            conflict = editversions.refuse(form, exc, noun="agent")
            version, status = exc.version, 409
        except ComboError as exc:
            if exc.error != ErrorCode.NOT_FOUND:
                raise
            raise Http404 from None  # deleted meanwhile
        else:
            messages.success(request, f"Saved “{agent.name}”.")
            return redirect("console:agent-edit", agent_id=agent.id)
    if form.is_bound:
        # Validation copied the refused values onto the instance; the page shows the agent as saved.
        agent.refresh_from_db()
    return _render_edit(
        request, agent, form, version=version, conflict=conflict, status=status if form.is_bound else 200
    )


def _files_section(agent: Agent) -> str:
    return reverse("console:agent-edit", kwargs={"agent_id": agent.id}) + "#files"


@login_required
@require_http_methods(["GET", "POST"])
def agent_file_attach(request, agent_id):
    """Attach one of the user's files (the "attach existing file" select); a GET goes to the Files section."""
    agent = _owned_agent(request, agent_id)
    if request.method == "GET":
        return redirect(_files_section(agent))
    attach_form = AttachFileForm(request.POST, agent=agent)
    if attach_form.is_valid():
        file = attach_form.cleaned_data["file"]
        try:
            services.agent_file_attach(agent=agent, file=file)
        except ComboError as exc:
            if exc.error == ErrorCode.NOT_FOUND:
                raise Http404 from None  # deleted meanwhile
            attach_form.add_error("file", exc.message)
        else:
            messages.success(request, f"Attached “{file.name}” to {agent.name}.")
            return redirect(_files_section(agent))
    return _render_edit(request, agent, AgentForm(instance=agent), attach_form, status=400)


@login_required
@require_http_methods(["GET", "POST"])
def agent_file_detach(request, agent_id, file_id):
    """Detach a file from the agent; the file stays in the user's files. A GET goes to the Files section."""
    agent = _owned_agent(request, agent_id)
    file = _owned_file(request, file_id)
    if request.method == "GET":
        return redirect(_files_section(agent))
    if services.agent_file_detach(agent=agent, file=file):
        messages.success(request, f"Detached “{file.name}”. It is still in your files.")
    else:
        messages.info(request, f"“{file.name}” was not attached to {agent.name}.")
    return redirect(_files_section(agent))


@login_required
@require_GET
def file_list(request):
    """Every file the user uploaded, with the agents using it."""
    files = (
        KnowledgeFile.objects.filter(owner=request.user)
        .prefetch_related("agents")
        .order_by("-created_at", "id")
    )
    context = {"files": files, "upload": _upload_context(request, None)}
    return render(request, "agents/file_list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def file_delete(request, file_id):
    """GET asks for confirmation; only the POST from that page deletes."""
    file = _owned_file(request, file_id)
    if request.method == "POST":
        name = file.name
        knowledge_services.knowledge_file_delete(file=file)
        messages.success(request, f"Deleted “{name}”. No agent answers from it any more.")
        return redirect("console:files")
    agents = file.agents.order_by("name")
    return render(request, "agents/file_confirm_delete.html", {"file": file, "agents": agents})


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
        "max_question_chars": settings.COMBO_MAX_QUESTION_CHARS,
    }
    return render(request, "agents/playground.html", context)
