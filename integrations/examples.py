"""Copy-ready examples for a webhook's console page: a sample event and the curl + openssl command that signs it.

The sample event is built from the webhook's question template, so sending
it as shown asks a real question: `{{ pull_request.title }}` becomes
`{"pull_request": {"title": "example title"}}`; with no template the event
carries a top-level "question".
"""

from __future__ import annotations

import json

from integrations import template

DEFAULT_EVENT = {"question": "Review this PR for me"}
_MAX_INDEX = 5  # {{ commits.7.message }} would need eight list items; keep samples short


def _example_value(path: str) -> str:
    return "example " + path.rsplit(".", 1)[-1].replace("_", " ")


def _place(root: dict, parts: list[str], value: str) -> None:
    """Put `value` at `parts` inside `root`, making objects and lists on the way.

    A path that clashes with an earlier one (a value where it needs an object,
    a list index past a handful) is left out.
    """
    node = root
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        if last:
            make = lambda: value  # noqa: E731
        elif parts[position + 1].isdigit():
            make = list
        else:
            make = dict
        if isinstance(node, dict):
            if part not in node:
                node[part] = make()
            child = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) <= _MAX_INDEX:
            while len(node) <= int(part):
                node.append(make())
            child = node[int(part)]
        else:
            return
        if last:
            return
        node = child


def sample_event(question_template: str) -> dict:
    """A JSON object that fills the template's placeholders (or carries a "question" when there is no template)."""
    paths = template.placeholder_paths(question_template or "")
    if not (question_template or "").strip():
        return dict(DEFAULT_EVENT)
    event: dict = {}
    for path in paths:
        _place(event, path.split("."), _example_value(path))
    return event or {"action": "opened"}


# The second line of SIG=...: a backslash-newline continues the command substitution.
_HMAC = '  | openssl dgst -sha256 -hmac "$COMBO_WEBHOOK_SECRET" -r | cut -d\' \' -f1)"'


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def curl_openssl(*, events_url: str, question_template: str, timestamped: bool) -> str:
    """The shell commands that sign an event with openssl and send it with curl (docs/webhooks.md).

    The secret is read from $COMBO_WEBHOOK_SECRET, so the text can be copied
    as it is and the secret never sits in a page or a shell history.
    """
    body = json.dumps(sample_event(question_template), ensure_ascii=False)
    lines = [f"BODY={_shell_quote(body)}"]
    if timestamped:
        lines += [
            "T=$(date +%s)",
            'SIG="t=$T,sha256=$(printf \'%s.%s\' "$T" "$BODY" \\',
            _HMAC,
        ]
    else:
        lines += ['SIG="sha256=$(printf \'%s\' "$BODY" \\', _HMAC]
    lines += [
        f"curl -s {_shell_quote(events_url)} \\",
        '  -H "Content-Type: application/json" -H "X-Combo-Signature: $SIG" \\',
        '  --data-binary "$BODY"',
    ]
    return "\n".join(lines)
