from django.apps import AppConfig


class ComboConfig(AppConfig):
    name = "combo"
    verbose_name = "Combo"

    def ready(self):
        # Registers the OpenAPI security-scheme extension with drf-spectacular.
        from combo.api import authentication  # noqa: F401
