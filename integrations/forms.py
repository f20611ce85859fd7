"""Console forms for webhooks: the same fields and limits as the API's WebhookSerializer.

The forms only check shapes; integrations.services decides (owned agent,
template placeholders, the SSRF guard on the callback URL) and its refusals
are put next to their fields by `add_service_errors`.
"""

from __future__ import annotations

from django import forms

from agents.models import Agent
from combo.errors import ComboError
from combo.forms import MultilineField
from integrations import ssrf, template
from integrations.models import Webhook

TEMPLATE_HELP = (
    "The question asked for each event. A placeholder <code>{{ dotted.path }}</code> is replaced by that value "
    "from the event's JSON: <code>{{ pull_request.title }}</code>, list items by position "
    "(<code>{{ commits.0.message }}</code>). A missing path becomes empty; numbers, lists and objects become "
    "compact JSON. Only dotted paths: no filters, no expressions. Leave empty to ask the event's own "
    "top-level <code>\"question\"</code>."
)

# The API's field names as services report them (errors={...}) → this form's fields.
_SERVICE_FIELDS = {"agent_id": "agent", "agent": "agent", "name": "name", "question_template": "question_template",
                   "callback_url": "callback_url", "enabled": "enabled", "require_timestamp": "require_timestamp"}


class AgentChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, agent: Agent) -> str:
        return agent.name


class WebhookForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Something to recognise it by, such as the system that sends the events.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "e.g. PR reviews"}),
    )
    agent = AgentChoiceField(
        queryset=Agent.objects.none(), empty_label=None,
        help_text="The agent that answers each event.",
    )
    # Stored with LF line endings; only its line endings differing from the stored one is no change.
    question_template = MultilineField(
        label="Question template", required=False, strip=False, max_length=template.MAX_TEMPLATE_CHARS,
        help_text=TEMPLATE_HELP,
        widget=forms.Textarea(attrs={
            "rows": 4, "class": "mono",
            "placeholder": "Review this PR for me: {{ pull_request.title }}\n\n{{ pull_request.body }}",
        }),
    )
    callback_url = forms.CharField(
        label="Callback URL", required=False, max_length=2000,
        help_text=(
            "Where each answer is POSTed, signed with this webhook's secret. <code>http://</code> or "
            "<code>https://</code> on a public address; loopback, private and cloud metadata addresses are "
            "refused unless an operator allows them. Leave empty to keep answers here only."
        ),
        widget=forms.URLInput(attrs={"autocomplete": "off", "placeholder": "https://ci.example.com/combo-results"}),
    )
    enabled = forms.BooleanField(
        required=False, initial=True,
        help_text="A disabled webhook refuses events (403, code 10145) and records the refusal.",
    )
    require_timestamp = forms.BooleanField(
        label="Require timestamped signatures", required=False,
        help_text=(
            "Accept only <code>t=&lt;unix seconds&gt;,sha256=&lt;hex&gt;</code>, so a captured event cannot be "
            "replayed later (10144 otherwise)."
        ),
    )

    def __init__(self, *args, owner, webhook: Webhook | None = None, **kwargs):
        if webhook is not None and "initial" not in kwargs:
            kwargs["initial"] = self.edited_values(webhook)
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.filter(owner=owner).order_by("name", "created_at")

    @staticmethod
    def edited_values(webhook: Webhook) -> dict:
        """The fields this form edits, as stored (their version: combo.editversions)."""
        return {
            "name": webhook.name, "agent": webhook.agent_id, "question_template": webhook.question_template,
            "callback_url": webhook.callback_url, "enabled": webhook.enabled,
            "require_timestamp": webhook.require_timestamp,
        }

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the webhook a name.")
        return name

    def clean_question_template(self) -> str:
        # The service checks this too; checking here as well shows every field's error at once.
        value = self.cleaned_data["question_template"]
        bad = template.invalid_placeholders(value)
        if bad:
            raise forms.ValidationError(
                "Placeholders must be dotted paths like {{ pull_request.title }}: " + ", ".join(bad)
            )
        return value

    def clean_callback_url(self) -> str:
        url = self.cleaned_data["callback_url"].strip()
        if url and url != self.initial.get("callback_url"):
            # The SSRF guard, as the service runs it when saving (which it does again).
            try:
                ssrf.parse_url(url)
                ssrf.check_callback_url(url)
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
            except ComboError as exc:
                raise forms.ValidationError(exc.message) from None
        return url

    def webhook_fields(self) -> dict:
        """The cleaned values, ready for integrations.services.webhook_create/webhook_update."""
        return {name: self.cleaned_data[name] for name in self.fields}

    def add_service_errors(self, error: ComboError) -> None:
        """A refusal from integrations.services, shown next to the field it is about (else above the form)."""
        placed = False
        for key, messages in (error.errors or {}).items():
            field = _SERVICE_FIELDS.get(key)
            for message in messages if isinstance(messages, list) else [messages]:
                self.add_error(field if field in self.fields else None, str(message))
                placed = True
        if not placed:
            self.add_error(None, error.message)


class RotateForm(forms.Form):
    retire_now = forms.BooleanField(
        label="Retire the old secret at once", required=False,
        help_text="For a leaked secret: events signed with it are refused from now on (10142).",
    )
