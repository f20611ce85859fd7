"""`manage.py serve`: the whole product on one port (what `make run` starts).

One or more daphne processes share one listening socket (opened here and passed
down with --fd, so the kernel spreads connections between them), the task
worker runs beside them, and the reaper marks answers and webhook events left
by a dead process, takes up the webhook callbacks it left pending and keeps
the task queue's records tidy.
SIGTERM/SIGINT stop everything gracefully: each daphne finishes or cleanly
ends its open streams (combo.shutdown) before exiting.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import subprocess
import sys
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from accounts.models import User
from agents.knowledge.services import knowledge_file_reap_interrupted
from agents.reaper import reap_interrupted
from combo.dbhealth import require_database
from combo.server import LISTEN_BACKLOG, daphne_command
from combo.taskqueue import prune_finished_tasks, reap_stopped_tasks
from integrations.services import delivery_reap_callbacks, delivery_reap_interrupted

logger = logging.getLogger("combo.serve")

# At start-up and every COMBO_REAPER_INTERVAL_SECONDS: each step, and what start-up says when it did something.
REAPERS = [
    (reap_interrupted, "Marked {} answer(s) left by a stopped server as interrupted."),
    (delivery_reap_interrupted, "Marked {} webhook event(s) left running by a stopped task worker as failed."),
    (
        delivery_reap_callbacks,
        "Took up {} webhook callback(s) left pending by a stopped task worker "
        "(sent again, or failed when out of retries).",
    ),
    (knowledge_file_reap_interrupted, "Marked {} knowledge file(s) left processing by a stopped task worker as failed."),
    (reap_stopped_tasks, "Marked {} task(s) left running by a stopped task worker as failed."),
    (prune_finished_tasks, "Deleted {} task result(s) older than COMBO_TASK_RESULTS_KEEP_DAYS."),
]


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket the server processes share; a port that cannot be had is a plain message, not a traceback."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"Port {port} is already in use (another Combo, or another program). Stop it, "
                f"or choose another port: `make run PORT={port + 1}` or `manage.py serve --port {port + 1}`."
            ) from None
        raise CommandError(f"Cannot listen on {host}:{port}: {exc.strerror}.") from None
    return listener


class Command(BaseCommand):
    help = "Serve the API, console, admin and streams with daphne, plus the task worker and the reaper."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument("--workers", type=int, default=1, help="daphne processes sharing the port.")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the task worker.")

    def handle(self, port, host, workers, no_worker, verbosity, **options):
        listener = _listen(host, port)  # first: a busy port is said before anything else
        try:
            require_database()  # then a database that cannot be reached, in one line
        except CommandError:
            listener.close()
            raise
        self._banner(port)
        self._reap(say=True)

        listener.set_inheritable(True)
        fd = listener.fileno()

        children: list[subprocess.Popen] = []
        for _ in range(max(1, workers)):
            children.append(subprocess.Popen(daphne_command(fd=fd, verbosity=verbosity), pass_fds=(fd,)))
        listener.close()  # the children hold it now
        if not no_worker:
            children.append(subprocess.Popen([sys.executable, "manage.py", "db_worker", "-v", "0"]))

        stopping = threading.Event()

        def stop(signum, frame):
            stopping.set()
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        crashed = False
        while not stopping.wait(settings.COMBO_REAPER_INTERVAL_SECONDS):
            if any(child.poll() is not None for child in children):
                self._say("A server process exited; stopping the others.", level=logging.ERROR)
                crashed = True
                stop(None, None)
                break
            self._reap(say=False)
        grace = settings.COMBO_SHUTDOWN_GRACE_SECONDS + 10
        for child in children:
            try:
                child.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                child.kill()
        if crashed:
            # Not a clean stop: say so, so that a supervisor (systemd
            # Restart=on-failure, a container's restart policy) starts it again;
            # the answers and events the lost process left are marked at the
            # next start.
            raise SystemExit(1)

    def _reap(self, *, say: bool) -> None:
        """Run each reaper (see REAPERS); one that fails (the database away a moment) is logged and tried next time."""
        # As at a request's start: drop a connection that failed or that the database closed (a
        # restart), so that the round after a failure reconnects instead of failing for good.
        close_old_connections()
        for reaper, told in REAPERS:
            try:
                done = reaper()
            except Exception:  # noqa: BLE001 - the server processes must outlive a failed round
                logger.exception("the reaper's %s failed; it runs again in %s s", reaper.__name__,
                                 settings.COMBO_REAPER_INTERVAL_SECONDS)
                continue
            if say and done:
                self._say(told.format(done))

    def _banner(self, port: int) -> None:
        base = f"http://localhost:{port}"
        lines = [
            f"Combo is starting on {base}",
            f"  Console:     {base}/console/",
            f"  Admin:       {base}/admin/",
            f"  API:         {base}/v1/  (docs: {base}/v1/docs)",
            f"  Data folder: {settings.DATA_DIR}",
        ]
        if not User.objects.exists():
            lines += [
                "No users yet. Create the first one with:",
                "  .venv/bin/python manage.py createsuperuser",
                "or mint an API key for a new user at once with:",
                "  .venv/bin/python manage.py createapikey alice --create-user",
            ]
        self._say("\n".join(lines))

    def _say(self, text: str, *, level: int = logging.INFO) -> None:
        """A note for the operator: plain lines (stdout, stderr for an error), or with LOG_FORMAT=json
        a log record like every other line."""
        if settings.LOG_FORMAT == "json":
            logger.log(level, "%s", text)
        else:
            (self.stderr if level >= logging.WARNING else self.stdout).write(text)
