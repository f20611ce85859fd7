"""Form fields shared by the console's forms.

Browsers send a textarea's lines with CRLF (HTML's form encoding), whatever the
user typed. `MultilineField` stores them with LF, and counts a value as
unchanged when only its line endings differ from what is stored, so a form
saved unchanged changes nothing: not a webhook's template, not an agent's
instructions, not even a text stored with CRLF through the API (which keeps
what JSON gives it).
"""

from __future__ import annotations

from django import forms
from django.utils.text import normalize_newlines


def lf(value):
    """The text with CRLF and lone CR line endings as LF; anything else as it is."""
    return normalize_newlines(value) if isinstance(value, str) else value


class MultilineField(forms.CharField):
    widget = forms.Textarea

    def to_python(self, value):
        return super().to_python(lf(value))

    def has_changed(self, initial, data):
        return super().has_changed(lf(initial), lf(data))
