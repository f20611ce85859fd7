"""Live servers for tests that must cross real boundaries (HTTP, SSE, processes).

`LiveCombo` runs the product as `make run` does (daphne serving combo.asgi) in
a subprocess with its own data folder, so a test talks to it over real sockets.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from combo.server import daphne_command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveCombo:
    """One daphne process (or several sharing a data folder/database)."""

    def __init__(self, env: dict[str, str] | None = None, data_dir: str | None = None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="combo-live-")
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "combo.settings",
            "COMBO_DATA_DIR": self.data_dir,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.processes: list[subprocess.Popen] = []
        self.ports: list[int] = []

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def migrate(self) -> None:
        self.manage("migrate", "--noinput", "-v", "0")

    def create_key(self, username: str) -> str:
        return self.manage("createapikey", username, "--create-user").strip()

    def start(self, extra_env: dict[str, str] | None = None) -> str:
        port = free_port()
        log = open(Path(self.data_dir) / f"daphne-{port}.log", "wb")
        process = subprocess.Popen(
            daphne_command("127.0.0.1", port),  # as `manage.py serve` starts it
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        self.ports.append(port)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"daphne exited: {self.log(port)[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code in (200, 503):
                    return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("daphne did not start in 30 s")

    def log(self, port: int) -> str:
        return (Path(self.data_dir) / f"daphne-{port}.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


def read_sse(response: httpx.Response) -> list[tuple[str, dict | str]]:
    """Parse a text/event-stream body into (event, data) pairs; comments as ('comment', text)."""
    import json

    events: list[tuple[str, dict | str]] = []
    event, data_lines = "message", []
    for line in response.iter_lines():
        if line.startswith(":"):
            events.append(("comment", line[1:].strip()))
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data_lines.append(line[5:].strip())
        elif line == "" and data_lines:
            events.append((event, json.loads("\n".join(data_lines))))
            event, data_lines = "message", []
    return events
