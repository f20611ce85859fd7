"""The deployment's LLM providers, built once per process from settings.

"builtin" (the offline provider) always exists; "openai" exists when
COMBO_LLM_BASE_URL is set and is then the default. Tests swap providers with
`override_providers()`.
"""

from __future__ import annotations

import contextlib
import threading

from django.conf import settings
from django.core.exceptions import ValidationError

from agents.llm import registry
from agents.llm.base import Provider
from agents.llm.offline import OfflineProvider

_lock = threading.Lock()
_configured = False


def _build() -> tuple[dict[str, Provider], str]:
    providers: dict[str, Provider] = {"builtin": OfflineProvider(delay=settings.COMBO_BUILTIN_STREAM_DELAY)}
    default = "builtin"
    if settings.COMBO_LLM_BASE_URL:
        from agents.llm.openai_compat import OpenAICompatibleProvider

        providers["openai"] = OpenAICompatibleProvider(
            base_url=settings.COMBO_LLM_BASE_URL,
            api_key=settings.COMBO_LLM_API_KEY or "none",
            timeout=settings.COMBO_LLM_TIMEOUT,
        )
        default = "openai"
    return providers, default


def ensure_configured() -> None:
    global _configured
    if _configured:
        return
    with _lock:
        if not _configured:
            providers, default = _build()
            registry.configure(providers, default)
            _configured = True


def provider_names() -> list[str]:
    ensure_configured()
    return registry.names()


def check_provider(name: str) -> None:
    """Refuse a provider this deployment does not configure ("" is the default one, always fine).

    The one rule for an agent's provider: the API, the console and Django admin apply it.
    """
    names = provider_names()
    if name and name not in names:
        raise ValidationError(f"Unknown provider {name!r}; configured: {', '.join(names)}.", code="unknown_provider")


def default_model(provider_name: str) -> str:
    return settings.COMBO_LLM_MODEL if provider_name == "openai" else "builtin"


def get_provider(name: str) -> Provider:
    ensure_configured()
    return registry.get_provider(name)


def default_provider_name() -> str:
    ensure_configured()
    return registry.default_name()


@contextlib.contextmanager
def override_providers(providers: dict[str, Provider], default: str):
    """Use these providers inside the block (tests)."""
    global _configured
    ensure_configured()
    saved = registry.snapshot()
    registry.configure(providers, default)
    try:
        yield
    finally:
        registry.restore(saved)
