"""Template helpers for the console pages."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.filter
def relative(when: datetime | None) -> str:
    """'3 minutes ago', 'in 29 days', or 'just now'."""
    if when is None:
        return ""
    now = timezone.now()
    if abs((when - now).total_seconds()) < 60:
        return "just now"
    if when > now:
        return f"in {timeuntil(when, now, depth=1)}"
    return f"{timesince(when, now, depth=1)} ago"
