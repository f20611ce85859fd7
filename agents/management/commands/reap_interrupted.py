from django.conf import settings
from django.core.management.base import BaseCommand

from agents.knowledge.services import knowledge_file_reap_interrupted
from agents.reaper import reap_interrupted
from combo.taskqueue import prune_finished_tasks, reap_stopped_tasks
from integrations.services import delivery_reap_callbacks, delivery_reap_interrupted


class Command(BaseCommand):
    help = (
        "Mark answers stuck in_progress (their server process died) as interrupted and webhook events "
        "left running (their task worker died) as failed; send again the webhook results whose callback "
        "was left pending (or fail them when out of retries); mark knowledge files left processing failed; mark queued tasks a stopped worker left running "
        "failed, and delete task results older than COMBO_TASK_RESULTS_KEEP_DAYS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None, help="Seconds (default: the setting).")
        parser.add_argument("--dry-run", action="store_true", help="Count, change nothing.")

    def handle(self, older_than, dry_run, verbosity, **options):
        answers = reap_interrupted(older_than_seconds=older_than, dry_run=dry_run)
        events = delivery_reap_interrupted(older_than_seconds=older_than, dry_run=dry_run)
        callbacks = delivery_reap_callbacks(older_than_seconds=older_than, dry_run=dry_run)
        files = knowledge_file_reap_interrupted(older_than_seconds=older_than, dry_run=dry_run)
        tasks = reap_stopped_tasks(older_than_seconds=older_than, dry_run=dry_run)
        pruned = prune_finished_tasks(dry_run=dry_run)
        if verbosity:
            verb = "Would mark" if dry_run else "Marked"
            self.stdout.write(f"{verb} {answers} answer(s) interrupted.")
            self.stdout.write(f"{verb} {events} webhook event(s) failed.")
            self.stdout.write(f"{'Would take up' if dry_run else 'Took up'} {callbacks} webhook callback(s) left pending.")
            self.stdout.write(f"{verb} {files} knowledge file(s) left processing failed.")
            self.stdout.write(f"{verb} {tasks} queued task(s) left running failed.")
            self.stdout.write(
                f"{'Would delete' if dry_run else 'Deleted'} {pruned} task result(s) older than "
                f"{settings.COMBO_TASK_RESULTS_KEEP_DAYS} day(s) (COMBO_TASK_RESULTS_KEEP_DAYS)."
            )
