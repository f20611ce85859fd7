"""Cursor pagination in the shape API.md fixes: {"items": [...], "next_cursor": ...}.

Ordered newest first by (created_at, id), which is stable under inserts, and the
cursor is opaque (DRF's base64 encoding of the position).
"""

from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination as DRFCursorPagination
from rest_framework.response import Response


class CursorPagination(DRFCursorPagination):
    ordering = ("-created_at", "-id")  # the position in a cursor is a created_at (decode_cursor)
    page_size = settings.API_PAGE_SIZE_DEFAULT
    max_page_size = settings.API_PAGE_SIZE_MAX
    page_size_query_param = "limit"
    cursor_query_param = "cursor"

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        # ASCII digits only: int() also takes " 5", "5_0" and other scripts' digits ("٣").
        if not (raw.isascii() and raw.isdigit()):
            raise ValidationError({"limit": [f"Must be an integer from 1 to {self.max_page_size}."]})
        value = int(raw)
        if not 1 <= value <= self.max_page_size:
            raise ValidationError({"limit": [f"Must be an integer from 1 to {self.max_page_size}."]})
        return value

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound:
            raise ValidationError({"cursor": ["This cursor is not valid; start again without it."]}) from None

    def decode_cursor(self, request):
        """DRF's decoding, plus a check of the position it carries (a time: both orderings start with created_at).

        DRF hands the position to the database as it is: a cursor edited to
        carry anything else failed there, as a 500.
        """
        cursor = super().decode_cursor(request)  # NotFound for what does not decode
        if cursor is not None and cursor.position is not None:
            try:
                position = parse_datetime(cursor.position)
                valid = position is not None
                if valid:
                    # A time whose UTC equivalent falls outside the calendar
                    # ("0001-01-01 00:00+05:00") overflows in the database query.
                    if timezone.is_naive(position):
                        position = position.replace(tzinfo=timezone.get_default_timezone())
                    position.astimezone(UTC)
            except (ValueError, OverflowError):  # well formed but impossible ("2026-13-45")
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)
        return cursor

    def encode_cursor(self, cursor):
        # DRF returns a full URL; API.md promises an opaque cursor value instead.
        url = super().encode_cursor(cursor)
        from urllib.parse import parse_qs, urlparse

        return parse_qs(urlparse(url).query).get(self.cursor_query_param, [None])[0]

    def get_paginated_response(self, data):
        return Response({"items": data, "next_cursor": self.get_next_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["items", "next_cursor"],
            "properties": {
                "items": schema,
                "next_cursor": {
                    "type": "string",
                    "nullable": True,
                    "description": "Pass as ?cursor= to get the next page; null on the last page.",
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"Items per page (default {self.page_size}, at most {self.max_page_size}).",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
            {
                "name": "cursor",
                "in": "query",
                "required": False,
                "description": "The `next_cursor` of the previous page.",
                "schema": {"type": "string"},
            },
        ]


class OldestFirstCursorPagination(CursorPagination):
    """For conversation history, which reads oldest first."""

    ordering = ("created_at", "id")
