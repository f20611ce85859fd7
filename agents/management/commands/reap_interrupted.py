from django.core.management.base import BaseCommand

from agents.reaper import reap_interrupted


class Command(BaseCommand):
    help = "Mark answers stuck in_progress (their server process died) as interrupted."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, help="Seconds (default: the setting).")
        parser.add_argument("--dry-run", action="store_true", help="Count, change nothing.")

    def handle(self, older_than, dry_run, verbosity, **options):
        count = reap_interrupted(older_than_seconds=older_than, dry_run=dry_run)
        if verbosity:
            self.stdout.write(f"{'Would mark' if dry_run else 'Marked'} {count} answer(s) interrupted.")
