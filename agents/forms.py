"""The console's agent form: the same fields and limits as the API's AgentSerializer."""

from __future__ import annotations

from django import forms

from agents import llm_config
from agents.models import MAX_TOKENS_MAX, MAX_TOKENS_MIN, TEMPERATURE_MAX, TEMPERATURE_MIN, Agent, KnowledgeFile
from combo.forms import MultilineField

# Textareas: stored with LF line endings, however the browser sends them.
_MULTILINE = ("description", "instructions", "opening_message")


class AgentForm(forms.ModelForm):
    llm_provider = forms.ChoiceField(
        label="Provider", required=False,
        help_text="Which of this deployment's language-model providers answers for this agent.",
    )
    llm_model = forms.CharField(
        label="Model", required=False, max_length=200,
        help_text="The model name at the provider. Leave empty for the provider's default.",
    )
    temperature = forms.FloatField(
        required=False, min_value=TEMPERATURE_MIN, max_value=TEMPERATURE_MAX,
        widget=forms.NumberInput(attrs={"step": "0.1", "placeholder": "provider default"}),
        help_text="0 to 2. Lower is more focused, higher more varied.",
    )
    max_tokens = forms.IntegerField(
        label="Max tokens", required=False, min_value=MAX_TOKENS_MIN, max_value=MAX_TOKENS_MAX,
        widget=forms.NumberInput(attrs={"placeholder": "provider default"}),
        help_text="The longest answer, in tokens.",
    )

    class Meta:
        model = Agent
        fields = [
            "name", "description", "instructions", "opening_message",
            "llm_provider", "llm_model", "temperature", "max_tokens",
        ]
        labels = {"opening_message": "Opening message"}
        field_classes = dict.fromkeys(_MULTILINE, MultilineField)
        help_texts = {
            "name": "Shown in this console and returned by the API.",
            "description": "A note for you and your team; the model does not see it.",
            "instructions": "The system prompt: who the agent is and how it answers.",
            "opening_message": "The agent's first message in every new session.",
        }
        widgets = {
            "description": forms.Textarea(attrs={"rows": 2}),
            "instructions": forms.Textarea(attrs={"rows": 10, "class": "mono"}),
            "opening_message": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = llm_config.default_provider_name()
        choices = [("", f"Deployment default ({default})")]
        choices += [(name, name) for name in llm_config.provider_names()]
        current = self.instance.llm_provider if self.instance else ""
        if current and current not in llm_config.provider_names():
            # Kept selectable, so saving other fields does not fail on a provider
            # this deployment dropped (the API answers 502 for it until changed).
            choices.append((current, f"{current} (not configured here)"))
        self.fields["llm_provider"].choices = choices
        self.fields["llm_model"].widget.attrs["placeholder"] = llm_config.default_model(default)

    @classmethod
    def edited_values(cls, agent: Agent) -> dict:
        """The fields this form edits, as stored (their version: combo.editversions)."""
        return {name: getattr(agent, name) for name in cls.Meta.fields}

    def agent_fields(self) -> dict:
        """The cleaned values, ready for agents.services.agent_create/agent_update.

        A text whose line endings alone differ from the stored one (CRLF from
        the API, say) is kept as stored: a form saved unchanged changes no text.
        """
        fields = {name: self.cleaned_data[name] for name in self.Meta.fields}
        for name in _MULTILINE:
            if name not in self.changed_data and name in self.initial:
                fields[name] = self.initial[name]
        return fields


class FileChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, file) -> str:
        return f"{file.name} ({file.kind}, {file.get_status_display().lower()})"


class AttachFileForm(forms.Form):
    """Attach one of the owner's files that this agent does not have yet."""

    file = FileChoiceField(
        label="Attach a file you uploaded before",
        queryset=KnowledgeFile.objects.none(),
        empty_label="Choose a file…",
        error_messages={
            "required": "Choose a file to attach.",
            "invalid_choice": "That file is not one of yours, or it is attached already.",
        },
    )

    def __init__(self, *args, agent: Agent, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["file"].queryset = (
            KnowledgeFile.objects.filter(owner_id=agent.owner_id)
            .exclude(agents=agent)
            .order_by("name", "created_at")
        )
