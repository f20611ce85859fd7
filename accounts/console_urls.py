"""Console pages of accounts (mounted under /console/ in the `console` namespace)."""

from django.contrib.auth.views import LogoutView
from django.urls import path

from accounts import views

urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    # POST only (Django's LogoutView refuses GET), so a link cannot sign anyone out.
    path("logout/", LogoutView.as_view(), name="logout"),
    path("signup/", views.sign_up, name="signup"),
    path("token", views.console_token, name="token"),
    path("settings/", views.settings_home, name="settings"),
    path("settings/api-keys/", views.api_keys, name="api-keys"),
    path("settings/api-keys/create/", views.api_key_create, name="api-key-create"),
    path("settings/api-keys/<uuid:key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("settings/password/", views.PasswordChangeView.as_view(), name="password-change"),
]
