"""Marks answers left `in_progress` by a process that died as `interrupted`.

A process stopped with SIGTERM records its own outcomes (combo.shutdown); one
killed outright cannot, so `serve` runs this at start-up and periodically.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from agents.models import Message
from combo.errors import ErrorCode


def reap_interrupted(*, older_than_seconds: int | None = None, dry_run: bool = False) -> int:
    """Returns how many answers were (or, with dry_run, would be) marked."""
    timeout = older_than_seconds if older_than_seconds is not None else settings.COMBO_REAPER_TIMEOUT_SECONDS
    stale = Message.objects.stale_in_progress(timezone.now() - timedelta(seconds=timeout))
    if dry_run:
        return stale.count()
    return stale.update(
        status=Message.Status.INTERRUPTED,
        error_code=ErrorCode.SHUTTING_DOWN.code,
        error_message="The server stopped before this answer finished.",
        completed_at=timezone.now(),
    )
