from django.apps import AppConfig

from combo.navigation import NavItem


class IntegrationsConfig(AppConfig):
    name = "integrations"
    default_auto_field = "django.db.models.BigAutoField"
    console_nav = (NavItem("Integrations", "console:webhooks", section="/console/integrations/", order=30),)
