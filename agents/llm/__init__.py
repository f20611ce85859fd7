"""Language-model providers for Combo's agents.

`Provider.stream()` is the one interface: text deltas, then usage, and
`LLMError` (UPSTREAM_* codes) for every failure. `OpenAICompatibleProvider`
talks to any OpenAI-style server; `OfflineProvider` is the honest built-in
answerer used when none is configured; `registry` maps names to providers.
"""

from .base import ChatMessage, ChatRequest, LLMError, Passage, Provider, Usage
from .offline import OfflineProvider
from .registry import configure, get_provider

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "LLMError",
    "OfflineProvider",
    "Passage",
    "Provider",
    "Usage",
    "configure",
    "get_provider",
]
