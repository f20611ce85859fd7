from django.apps import AppConfig

from combo.navigation import NavItem


class AgentsConfig(AppConfig):
    name = "agents"
    default_auto_field = "django.db.models.BigAutoField"
    console_nav = (
        NavItem("Agents", "console:agents", section="/console/agents/", order=10),
        NavItem("Files", "console:files", section="/console/files/", order=15),
    )

    def ready(self):
        from agents.knowledge import services as knowledge_services

        knowledge_services.connect_signals()
