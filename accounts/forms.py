"""Console forms for accounts: sign-in, sign-up and API keys (the password change uses Django's own)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.utils import timezone

from accounts.models import User
from combo import ratelimit
from combo.errors import ComboError


class LoginBudgetMixin:
    """A sign-in page's try spends the login budget of POST /v1/auth/token (docs/rate-limits.md).

    One budget per client IP and one per username tried, shared with the API,
    so guessing passwords through a page is stopped like guessing through /v1.
    """

    def clean(self):
        try:
            decision = ratelimit.check(
                ratelimit.LOGIN,
                client_ip=ratelimit.request_client_ip(self.request),
                username=self.cleaned_data.get("username") or None,
            )
        except ComboError as exc:  # the limit store is down and the deployment fails closed
            raise forms.ValidationError(exc.message, code="rate_limited") from None
        if decision is not None and not decision.allowed:
            raise forms.ValidationError(
                f"Too many sign-in attempts for this account or from this address. "
                f"Try again in {decision.retry_after} seconds.",
                code="rate_limited",
            )
        return super().clean()


class SignInForm(LoginBudgetMixin, AuthenticationForm):
    pass


class AdminSignInForm(LoginBudgetMixin, AdminAuthenticationForm):
    pass


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
