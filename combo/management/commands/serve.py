"""`manage.py serve`: the whole product on one port (what `make run` starts).

Starts the background-task worker next to daphne and stops both together, so
uploads and webhook runs keep being processed while the server is up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import User
from combo.server import daphne_command


class Command(BaseCommand):
    help = "Serve the API, console, admin and streams with daphne, plus the task worker."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--host", default="0.0.0.0")
        parser.add_argument("--no-worker", action="store_true", help="Do not start the task worker.")

    def handle(self, port, host, no_worker, verbosity, **options):
        base = f"http://localhost:{port}"
        self.stdout.write(
            "\n".join(
                [
                    f"Combo is starting on {base}",
                    f"  Console:     {base}/console/",
                    f"  Admin:       {base}/admin/",
                    f"  API:         {base}/v1/  (docs: {base}/v1/docs)",
                    f"  Data folder: {settings.DATA_DIR}",
                ]
            )
        )
        if not User.objects.exists():
            self.stdout.write(
                "No users yet. Create the first one with:\n"
                "  .venv/bin/python manage.py createsuperuser\n"
                "then sign in, or mint an API key at once with:\n"
                "  .venv/bin/python manage.py createapikey alice --create-user"
            )
        children: list[subprocess.Popen] = []
        if not no_worker:
            children.append(subprocess.Popen([sys.executable, "manage.py", "db_worker", "-v", "0"]))
        server = subprocess.Popen(daphne_command(host, port, proxy_headers=True))
        children.append(server)

        def stop(signum, frame):
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        code = server.wait()
        stop(None, None)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        sys.exit(code if code and code > 0 else 0)
