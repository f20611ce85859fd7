"""Console forms for accounts: sign-up and API keys (sign-in and password use Django's own)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.utils import timezone

from accounts.models import User


class SignUpForm(UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email")


class ApiKeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=100,
        help_text="Something to recognise it by, such as the service that will use it.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "placeholder": "e.g. billing-service"}),
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on",
        help_text="The key stops working at 00:00 UTC on this day. Leave empty for no expiry.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the key a name.")
        return name

    def clean_expires_on(self) -> date | None:
        day = self.cleaned_data.get("expires_on")
        if day is not None and day <= timezone.now().astimezone(UTC).date():
            raise forms.ValidationError("Pick a day after today.")
        return day

    def expires_at(self) -> datetime | None:
        day = self.cleaned_data.get("expires_on")
        return datetime.combine(day, time.min, tzinfo=UTC) if day else None
