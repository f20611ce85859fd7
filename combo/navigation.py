"""The console's top navigation, contributed by the apps that own the pages.

Each app lists its entries in its AppConfig (`console_nav`), so a new area
(integrations' Webhooks pages, say) appears in the navigation by declaring one
NavItem in its own apps.py, without editing the layout. An entry whose URL name
does not resolve is left out, so nothing links to a page that is not built.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.urls import NoReverseMatch, reverse


@dataclass(frozen=True)
class NavItem:
    label: str
    url_name: str
    # Pages under this path mark the entry as the current one.
    section: str
    order: int = 100


def nav_items() -> list[NavItem]:
    items = [item for config in apps.get_app_configs() for item in getattr(config, "console_nav", ())]
    return sorted(items, key=lambda item: (item.order, item.label))


def console_nav(request) -> dict:
    """Template context processor: `console_nav` is [(label, url, is_current)]."""
    if not request.path.startswith("/console/"):
        return {}
    entries = []
    for item in nav_items():
        try:
            url = reverse(item.url_name)
        except NoReverseMatch:
            continue
        entries.append((item.label, url, request.path.startswith(item.section)))
    return {"console_nav": entries}
