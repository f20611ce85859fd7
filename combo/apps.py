from django.apps import AppConfig

from combo.navigation import NavItem


class ComboConfig(AppConfig):
    name = "combo"
    verbose_name = "Combo"
    # Integrations (order 30) joins between these when its pages land.
    console_nav = (NavItem("API", "console:api", section="/console/api/", order=40),)

    def ready(self):
        # Registers the OpenAPI security-scheme extension with drf-spectacular.
        from combo.api import authentication  # noqa: F401
