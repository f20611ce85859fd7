from django.apps import AppConfig

from combo.navigation import NavItem


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"
    default_auto_field = "django.db.models.BigAutoField"
    console_nav = (NavItem("Personal settings", "console:api-keys", section="/console/settings/", order=20),)

    def ready(self) -> None:
        from accounts import keycache

        keycache.connect_signals()
