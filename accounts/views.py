"""Console pages for accounts: sign in/out/up, password, API keys, and the page-JS token.

API keys: the full key is shown once, in the response to the POST that made it
(never stored, never put in the session or a cookie; `Cache-Control: no-store`).
Each create form carries a one-time token, so reloading that page or
submitting the form twice does not mint a second key: the repeat lands on the
list, which never shows a full key.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from accounts import services
from accounts.forms import ApiKeyCreateForm, SignInForm, SignUpForm
from accounts.models import ApiKey, User
from combo import formtokens

# --- Signing in and out -------------------------------------------------------


class SignInView(auth_views.LoginView):
    template_name = "accounts/login.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["no_users"] = not User.objects.exists()
        context["signup_enabled"] = settings.COMBO_ALLOW_SIGNUP
        return context


@require_http_methods(["GET", "POST"])
def sign_up(request):
    if not settings.COMBO_ALLOW_SIGNUP:
        raise Http404("Sign-up is off on this deployment.")
    if request.user.is_authenticated:
        return redirect("console:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = services.user_create(
            username=form.cleaned_data["username"],
            email=form.cleaned_data.get("email", ""),
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}. Create an agent to get started.")
        return redirect("console:home")
    return render(request, "accounts/signup.html", {"form": form})


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    extra_context = {"settings_section": "password"}
    success_url = reverse_lazy("console:password-change")

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password was changed.")
        return response


# --- API keys -----------------------------------------------------------------

_FORM_TOKENS = "api_key_form_tokens"


def _api_keys_page(request, *, form: ApiKeyCreateForm, form_token: str, created=None, status: int = 200):
    keys = ApiKey.objects.filter(owner=request.user).order_by("-created_at")
    context = {
        "keys": keys, "form": form, "form_token": form_token, "created": created, "settings_section": "api-keys",
    }
    return render(request, "accounts/api_keys.html", context, status=status)


@login_required
@require_GET
def api_keys(request):
    return _api_keys_page(request, form=ApiKeyCreateForm(), form_token=formtokens.issue(request, _FORM_TOKENS))


@login_required
@require_http_methods(["GET", "POST"])
@never_cache
def api_key_create(request):
    if request.method == "GET":
        # Only the list's form POSTs here; a GET (signing in again after the session ended) goes to it.
        return redirect("console:api-keys")
    sent = formtokens.Submission(
        request, _FORM_TOKENS, back="console:api-keys",
        note="That form was already sent. Its key is in the list below; a full key is shown only once.",
        note_at_once="That form was already sent. Its key is in the list below.",
    )
    form = ApiKeyCreateForm(request.POST)
    if refused := sent.refuse_repeat(form):
        return refused
    if not form.is_valid():
        return _api_keys_page(request, form=form, form_token=sent.token, status=400)
    with sent.acting():
        created = services.api_key_create(
            owner=request.user, name=form.cleaned_data["name"], expires_at=form.expires_at()
        )
    return _api_keys_page(
        request, form=ApiKeyCreateForm(), form_token=formtokens.issue(request, _FORM_TOKENS), created=created, status=201
    )


@login_required
@require_http_methods(["GET", "POST"])
def api_key_revoke(request, key_id):
    """GET asks for confirmation; only the POST from that page revokes."""
    api_key = get_object_or_404(ApiKey, id=key_id, owner=request.user)
    if request.method == "POST":
        services.api_key_revoke(api_key=api_key)
        messages.success(request, f"Revoked “{api_key.name}”. Requests with it now get 401 (code 10012).")
        return redirect("console:api-keys")
    return render(request, "accounts/api_key_revoke.html", {"api_key": api_key, "settings_section": "api-keys"})


# --- The page JavaScript's credential ------------------------------------------

@require_GET
@never_cache
def console_token(request):
    """A short-lived JWT for the signed-in session, for page JavaScript that calls /v1.

    The playground needs a bearer credential for /v1; an API key must never sit
    in a browser, so the page asks for an access token that expires in a few
    minutes (COMBO_CONSOLE_TOKEN_MINUTES) and keeps it in memory only.
    Cross-site pages cannot use this: the session cookie is SameSite=Lax (not
    sent on cross-site fetches), the JSON is unreadable cross-origin without
    CORS, and a request the browser marks as cross-site is refused outright.
    """
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return JsonResponse({"detail": "Cross-site requests cannot get a console token."}, status=403)
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "Signed out.", "login_url": settings.LOGIN_URL}, status=401)
    lifetime = settings.COMBO_CONSOLE_TOKEN_MINUTES * 60
    token = services.access_token_issue(user=request.user, lifetime=timedelta(seconds=lifetime))
    return JsonResponse({"access": str(token), "token_type": "Bearer", "expires_in": lifetime})


@login_required
def settings_home(request):
    return redirect("console:api-keys")
