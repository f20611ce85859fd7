from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import services
from accounts.models import User


class Command(BaseCommand):
    help = "Create an API key for USERNAME and print the key alone on stdout (shown once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="cli", help="A name to recognise the key by.")
        parser.add_argument(
            "--create-user", action="store_true", help="Create the user (no password) if missing."
        )

    @transaction.atomic
    def handle(self, username, name, create_user, verbosity, **options):
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create_user:
                raise CommandError(f"No user {username!r}; pass --create-user to create one.")
            user = services.user_create(username=username)
            if verbosity > 1:
                self.stderr.write(f"Created user {username}.")
        created = services.api_key_create(owner=user, name=name)
        # stdout carries the key and nothing else, so scripts can capture it.
        self.stdout.write(created.plain_key)
        if verbosity > 1:
            self.stderr.write(f"Key {created.api_key.prefix}… for {username}; it will not be shown again.")
