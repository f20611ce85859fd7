"""Python SDK for the Combo agent API.

    from combo_sdk import ComboAgent
    client = ComboAgent(api_key="ragflow-...", base_url="http://localhost:9380/v1")
    session = client.sessions.create(agent_id="...")
    response = client.completions.create(session_id=session.id, question="Review this PR for me", stream=False)
    print(response.answer)

`AsyncComboAgent` has the same surface for asyncio. See README.md.
"""

from . import signatures
from ._async_client import AsyncComboAgent, AsyncCursor
from ._base import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._client import ComboAgent, SyncCursor, Webhooks
from ._streaming import AsyncStream, ServerSentEvent, SSEDecoder, Stream
from ._version import __version__
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ClientError,
    ComboAPIError,
    ComboError,
    FileProcessingError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    RateLimitError,
    ServerError,
    SignatureVerificationError,
    StreamIncompleteError,
    UpstreamError,
    ValidationError,
)
from .types import (
    Agent,
    ApiKey,
    Completion,
    DoneEvent,
    ErrorEvent,
    File,
    LLMConfig,
    Message,
    MessageEvent,
    Page,
    Reference,
    Session,
    StreamEvent,
    Token,
    Usage,
    Webhook,
    WebhookDelivery,
)

__all__ = [
    "__version__",
    "ComboAgent",
    "AsyncComboAgent",
    "SyncCursor",
    "AsyncCursor",
    "Stream",
    "AsyncStream",
    "SSEDecoder",
    "ServerSentEvent",
    "Webhooks",
    "signatures",
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    # errors
    "ComboError",
    "APIConnectionError",
    "APITimeoutError",
    "ComboAPIError",
    "ClientError",
    "ValidationError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "PreconditionFailedError",
    "RateLimitError",
    "ServerError",
    "UpstreamError",
    "StreamIncompleteError",
    "FileProcessingError",
    "SignatureVerificationError",
    # types
    "Agent",
    "ApiKey",
    "Completion",
    "DoneEvent",
    "ErrorEvent",
    "File",
    "LLMConfig",
    "Message",
    "MessageEvent",
    "Page",
    "Reference",
    "Session",
    "StreamEvent",
    "Token",
    "Usage",
    "Webhook",
    "WebhookDelivery",
]
