"""Which provider answers: the process-wide table of configured providers.

Django settings call `configure()` once at startup; views call
`get_provider(agent.provider_name)`. Until `configure()` runs, the table holds
only the built-in offline answerer, so nothing ever fails for lack of setup.
"""

from __future__ import annotations

from combo.errors import ErrorCode

from .base import LLMError, Provider
from .offline import OfflineProvider

_providers: dict[str, Provider] = {"builtin": OfflineProvider()}
_default: str = "builtin"


def configure(providers: dict[str, Provider], default: str) -> None:
    """Replace the table. `default` must name one of `providers`."""
    global _providers, _default
    if default not in providers:
        raise ValueError(f"default provider {default!r} is not among {sorted(providers)}")
    # Swapped as a whole so a concurrent get_provider() sees old or new, never half.
    _providers, _default = dict(providers), default


def get_provider(name: str | None = None) -> Provider:
    """The provider called `name`, or the default one when `name` is empty."""
    provider = _providers.get(name or _default)
    if provider is None:
        raise LLMError(
            ErrorCode.UPSTREAM_ERROR,
            f"No provider named {name!r} is configured; use one of: {', '.join(sorted(_providers))}.",
            retryable=False,
        )
    return provider


def default_name() -> str:
    return _default


async def aclose_all() -> None:
    """Close every configured provider's connections (at shutdown)."""
    for provider in list(_providers.values()):
        await provider.aclose()


def names() -> list[str]:
    return sorted(_providers)


def snapshot() -> tuple[dict[str, Provider], str]:
    """The current table, for `restore()` (tests swap providers around a block)."""
    return dict(_providers), _default


def restore(saved: tuple[dict[str, Provider], str]) -> None:
    configure(*saved)
