"""Question templates: `{{ dotted.path }}` placeholders filled from a JSON payload.

Deliberately tiny: the only syntax is a placeholder naming a path of object
keys and list indexes (`{{ pull_request.title }}`, `{{ commits.0.message }}`).
Lookups are plain dict/list indexing on parsed JSON, never attribute access,
so nothing in a payload or template can run code (`{{ __class__ }}` is just a
key that is not there). A missing path renders empty; strings render as is,
other values as compact JSON.
"""

from __future__ import annotations

import json
import re

MAX_TEMPLATE_CHARS = 4000

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_PATH = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*$")


def invalid_placeholders(template: str) -> list[str]:
    """Placeholders that are not dotted paths (shown to the user when saving a template)."""
    return [match.group(0) for match in _PLACEHOLDER.finditer(template) if not _PATH.match(match.group(1).strip())]


def placeholder_paths(template: str) -> list[str]:
    """The dotted paths the template's valid placeholders name, in order (for examples)."""
    paths = [match.group(1).strip() for match in _PLACEHOLDER.finditer(template)]
    return [path for path in paths if _PATH.match(path)]


def lookup(payload, path: str):
    """The value at `path`, or None. Only dict keys and list indexes are followed."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict):
            if part not in value:
                return None
            value = value[part]
        elif isinstance(value, list) and part.isdigit():
            index = int(part)
            if index >= len(value):
                return None
            value = value[index]
        else:
            return None
    return value


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render(template: str, payload) -> str:
    def fill(match: re.Match) -> str:
        path = match.group(1).strip()
        if not _PATH.match(path):
            return ""
        return _text(lookup(payload, path))

    return _PLACEHOLDER.sub(fill, template)


def question_for(template: str, payload) -> str:
    """The question an event asks: the filled template, or the payload's top-level `question`."""
    if template.strip():
        return render(template, payload).strip()
    question = payload.get("question") if isinstance(payload, dict) else None
    return question.strip() if isinstance(question, str) else ""
