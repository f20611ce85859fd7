"""/v1/combo/...: agents, their sessions, and the completions endpoint's schema."""

from __future__ import annotations

import uuid

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import status
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import RetrieveModelMixin
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import services
from agents.models import Agent, Message, Session
from agents.serializers import (
    AgentSerializer,
    CompletionRequestSerializer,
    CompletionResultSerializer,
    MessageSerializer,
    SessionDetailSerializer,
    SessionSerializer,
)
from combo.api import conditional
from combo.api.pagination import OldestFirstCursorPagination
from combo.api.parsers import StrictJSONParser
from combo.api.viewsets import OwnedModelViewSet, OwnedQuerysetMixin, OwnedReadCreateDeleteViewSet


@conditional.documented
class AgentViewSet(conditional.ConditionalObjectMixin, OwnedModelViewSet):
    """Agents: a name, instructions (the system prompt), an LLM choice and an opening message.

    GET of one agent and PATCH answer with its ETag; GET, PATCH and DELETE
    evaluate If-Match and If-None-Match against it (a GET with If-None-Match
    naming it is a 304; a PATCH or DELETE with If-Match applies only if the
    agent is still that version) (combo.api.conditional).
    """

    queryset = Agent.objects.prefetch_related("files")
    serializer_class = AgentSerializer
    noun = "agent"
    version_note = " Any change makes a new version, its files included."

    def update(self, request, *args, **kwargs):
        self.check_preconditions()
        return conditional.with_etag(super().update(request, *args, **kwargs))

    def perform_create(self, serializer):
        serializer.instance = services.agent_create(owner=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.agent_update(
            agent=serializer.instance, precondition=self.precondition(), **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.agent_delete(agent=instance, precondition=self.precondition())


def session_detail(request, session: Session) -> dict:
    """A session with one page of its messages, oldest first."""
    paginator = OldestFirstCursorPagination()
    page = paginator.paginate_queryset(Message.objects.filter(session=session), request)
    data = SessionSerializer(session).data
    data["messages"] = {
        "items": MessageSerializer(page, many=True).data,
        "next_cursor": paginator.get_next_link(),
    }
    return data


_MESSAGE_PAGE_PARAMS = [
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": OldestFirstCursorPagination.max_page_size},
        description=(
            f"Messages per page (default {OldestFirstCursorPagination.page_size}, "
            f"at most {OldestFirstCursorPagination.max_page_size})."
        ),
    ),
    OpenApiParameter("cursor", str, description="The `messages.next_cursor` of the previous page."),
]


# The URL patterns take any text (a malformed id is a 404, like a missing one);
# the document says what a real id is.
_AGENT_ID = OpenApiParameter("agent_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The agent's id.")


@extend_schema(parameters=[_AGENT_ID])
class AgentSessionViewSet(OwnedReadCreateDeleteViewSet):
    """Sessions of one agent. Reading a session returns its messages, oldest first."""

    queryset = Session.objects.all()
    serializer_class = SessionSerializer

    def _agent_id(self) -> str:
        # Checked wherever the URL's agent_id reaches a query, whatever the action:
        # the database refuses a malformed UUID with an error, and it must be a 404.
        raw = self.kwargs["agent_id"]
        try:
            uuid.UUID(str(raw))
        except ValueError:
            raise Http404 from None
        return raw

    def get_agent(self) -> Agent:
        return get_object_or_404(Agent.objects.filter(owner=self.request.user), id=self._agent_id())

    def get_queryset(self):
        return super().get_queryset().filter(agent_id=self._agent_id())

    def list(self, request, *args, **kwargs):
        self.get_agent()
        return super().list(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        agent = self.get_agent()
        serializer = SessionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        session = services.session_create(agent=agent, owner=request.user, **serializer.validated_data)
        return Response(SessionSerializer(session).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: SessionDetailSerializer}, parameters=_MESSAGE_PAGE_PARAMS)
    def retrieve(self, request, *args, **kwargs):
        return Response(session_detail(request, self.get_object()))

    def perform_destroy(self, instance):
        services.session_delete(session=instance)


class SessionView(OwnedQuerysetMixin, RetrieveModelMixin, GenericAPIView):
    """A session by its id alone, with its agent_id and messages (the SDK's quick sample uses it)."""

    queryset = Session.objects.all()
    serializer_class = SessionDetailSerializer
    lookup_url_kwarg = "id"

    @extend_schema(
        operation_id="combo_sessions_retrieve",
        parameters=[
            OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The session's id."),
            *_MESSAGE_PAGE_PARAMS,
        ],
    )
    def get(self, request, *args, **kwargs):
        return Response(session_detail(request, self.get_object()))


_SSE_DESCRIPTION = """With `"stream": true` the answer is `text/event-stream`:

```
event: message
data: {"type": "message", "answer": "<delta>", "reference": []}

event: message
data: {"type": "message", "answer": "<last delta>", "reference": [{"id": "...", "file_id": "...", "file_name": "...", "content": "...", "score": 1.2, "position": {"page": 3}}]}

event: done
data: {"type": "done", "session_id": "...", "message_id": "...", "usage": {...}, "finish_reason": "stop"}
```

Concatenating every `answer` gives the full answer; `reference` is complete on the last
`message` event. `finish_reason` is why the answer ended: "stop", or "length" when the
agent's max tokens cut it short (null after an error), as in the non-stream answer. A failure after the stream started is `event: error` whose data is the
error envelope, then `event: done`. A comment line (`: keep-alive`) is sent while the
model is silent. Errors found before streaming are ordinary JSON envelopes.
"""


class CompletionsSchemaView(APIView):
    """Documents POST /v1/combo/agents/{agent_id}/completions for the OpenAPI document.

    Requests are served by agents.streaming (an async handler); this class only
    carries the schema, since drf-spectacular reads DRF views.
    """

    extra_error_statuses = ["502", "503", "504"]
    # agents.streaming reads the body as JSON only (a form body is 415), so the
    # document offers that one request media type.
    parser_classes = [StrictJSONParser]

    @extend_schema(
        operation_id="combo_agents_completions_create",
        summary="Ask the agent a question",
        description=_SSE_DESCRIPTION,
        request=CompletionRequestSerializer,
        parameters=[_AGENT_ID],
        responses={
            (200, "application/json"): CompletionResultSerializer,
            (200, "text/event-stream"): OpenApiResponse(
                response=OpenApiTypes.STR, description="Server-Sent Events when stream is true."
            ),
        },
        examples=[
            OpenApiExample(
                "Ask",
                value={"question": "hello", "session_id": "1f0c3a4e-1d2b-4c5d-8e9f-0a1b2c3d4e5f", "stream": False},
                request_only=True,
            )
        ],
        tags=["combo"],
    )
    def post(self, request, agent_id):  # pragma: no cover - never routed
        raise NotImplementedError
