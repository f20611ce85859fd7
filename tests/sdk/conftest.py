"""The SDK's tests run against a live Combo server that this suite starts.

One server for the session: a fresh data folder, `migrate`, a user `sdkuser`
with an API key (from `createapikey`) and a password (for JWTs), then daphne
on a free loopback port and the task worker beside it, as `make run` would.
The server's OpenAI-compatible provider points at a tiny local HTTP server
that always fails, so an agent set to provider "openai" provokes a real
UpstreamError; every other test agent uses the built-in offline provider,
which answers deterministically without a model.

Who is who:
- `live.api_key`: sdkuser's key from `createapikey` (the quick sample uses it).
- `api_key` (per test module): another key of sdkuser, minted through the API
  with a JWT, so each module has its own rate-limit budget.
- `live.jwt()`: an access token of sdkuser from POST /v1/auth/token.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
SDK_DIR = REPO / "sdk" / "python"
if str(SDK_DIR) not in sys.path:
    sys.path.insert(0, str(SDK_DIR))

from combo.server import daphne_command  # noqa: E402
from combo_sdk import AsyncComboAgent, ComboAgent  # noqa: E402

USERNAME = "sdkuser"
PASSWORD = "sdk correct horse battery"
BUILTIN = {"provider": "builtin"}
NO_MODEL_NOTICE = "No language model is configured for this deployment"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- small real HTTP servers in threads ---------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float


@dataclass
class Reply:
    status: int = 200
    body: object = None  # dict -> JSON; bytes -> raw
    headers: dict = field(default_factory=dict)
    drop: bool = False  # close the connection without answering


class ScriptedServer:
    """A real HTTP server on 127.0.0.1 answering from a script: one Reply per request,
    the last one repeating. Records every request it gets."""

    def __init__(self, script: list[Reply]):
        self.script = list(script)
        self.requests: list[Recorded] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(
                    Recorded(self.command, self.path, dict(self.headers), body, time.monotonic())
                )
                index = min(len(server.requests), len(server.script)) - 1
                reply = server.script[index]
                if reply.drop:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                payload = reply.body
                if isinstance(payload, (dict, list)):
                    raw = json.dumps(payload).encode()
                    content_type = "application/json"
                else:
                    raw = payload or b""
                    content_type = "text/plain"
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Content-Length" in reply.headers:
                    # A length that may lie (a body cut short): hang up after it.
                    self.close_connection = True
                else:
                    self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    """scripted(Reply(...), Reply(...)) -> a running ScriptedServer, stopped after the test."""
    servers = []

    def start(*script: Reply) -> ScriptedServer:
        server = ScriptedServer(list(script)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def envelope(data=None, *, code=0, message="ok", request_id=None):
    body = {"code": code, "message": message, "data": data if data is not None else {}}
    if code and request_id:
        body["data"] = {"request_id": request_id, **(data or {})}
    return body


# --- the live Combo server ----------------------------------------------------------


@dataclass
class LiveServer:
    root: str
    base_url: str
    api_key: str
    username: str
    password: str
    env: dict
    data_dir: Path
    log_path: Path
    _token: str | None = None
    _token_at: float = 0.0

    def jwt(self) -> str:
        """An access token for sdkuser (fetched once, renewed before its 15 minutes run out)."""
        if self._token is None or time.monotonic() - self._token_at > 600:
            with ComboAgent(base_url=self.base_url, api_key=None) as anonymous:
                self._token = anonymous.auth.token(username=self.username, password=self.password).access
            self._token_at = time.monotonic()
        return self._token

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _server_env(data_dir: Path, llm_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMBO_", "PYTEST_"))}
    # A separate, throwaway deployment: never the developer's database or Redis.
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "PORT"):
        env.pop(name, None)
    env.update(
        DJANGO_SETTINGS_MODULE="combo.settings",
        COMBO_DATA_DIR=str(data_dir),
        COMBO_LLM_BASE_URL=llm_url,
        COMBO_LLM_TIMEOUT="5",
        # The tests' receivers listen on loopback, which callbacks may not reach by default.
        COMBO_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        COMBO_WEBHOOK_RETRY_DELAYS="0,0",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    return env


def _manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def failing_llm():
    """The upstream 'LLM provider' of the live server: answers every call with HTTP 500."""
    error = {"error": {"message": "the model crashed", "type": "server_error"}}
    with ScriptedServer([Reply(500, error)]) as server:
        yield server


@pytest.fixture(scope="session")
def live(tmp_path_factory, failing_llm) -> LiveServer:
    data_dir = tmp_path_factory.mktemp("combo-sdk-live")
    env = _server_env(data_dir, failing_llm.url + "/v1")
    _manage(env, "migrate", "--noinput", "-v", "0")
    api_key = _manage(env, "createapikey", USERNAME, "--create-user", "--name", "sdk tests").strip()
    _manage(
        env, "shell", "-c",
        "from accounts.models import User\n"
        f"user = User.objects.get(username={USERNAME!r})\n"
        f"user.set_password({PASSWORD!r})\n"
        "user.save()\n",
    )

    port = free_port()
    root = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    log = open(log_path, "ab")
    server = subprocess.Popen(
        daphne_command("127.0.0.1", port),  # as `manage.py serve` starts it
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    # The background-task worker, as `manage.py serve` starts it (file ingestion, webhook runs).
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "db_worker", "-v", "0"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    live = LiveServer(
        root=root, base_url=root + "/v1", api_key=api_key, username=USERNAME, password=PASSWORD,
        env=env, data_dir=data_dir, log_path=log_path,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"daphne exited with {server.returncode}:\n{live.log_tail()}")
            try:
                if httpx.get(root + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not become healthy in 60 s:\n{live.log_tail()}")
            time.sleep(0.2)
        yield live
    finally:
        _stop(worker)
        _stop(server)
        log.close()  # the data folder (server.log included) is left to pytest's tmp_path retention


@pytest.fixture(scope="module")
def api_key(live, request) -> str:
    """A fresh API key of sdkuser for this test module (its own rate-limit budget)."""
    with ComboAgent(api_key=live.jwt(), base_url=live.base_url) as admin:
        return admin.api_keys.create(name=f"sdk {request.module.__name__}").key


@pytest.fixture
def client(live, api_key):
    with ComboAgent(api_key=api_key, base_url=live.base_url) as client:
        yield client


@pytest.fixture
async def aclient(live, api_key):
    async with AsyncComboAgent(api_key=api_key, base_url=live.base_url) as client:
        yield client


@pytest.fixture
def make_agent(live, api_key):
    """make_agent(**fields) -> a new agent on the built-in provider, deleted after the test."""
    made = []
    owner = ComboAgent(api_key=api_key, base_url=live.base_url)

    def make(**fields):
        fields.setdefault("name", "SDK test agent")
        fields.setdefault("llm", dict(BUILTIN))
        agent = owner.agents.create(**fields)
        made.append(agent.id)
        return agent

    yield make
    for agent_id in made:
        try:
            owner.agents.delete(agent_id)
        except Exception:
            pass
    owner.close()


@pytest.fixture
def agent(make_agent):
    return make_agent(name="Reviewer", instructions="You review pull requests.")


def _skip_for_missing_route(exc, what: str) -> None:
    # The server's answer for a path no route matches ("No endpoint at ..."),
    # as opposed to a 10040 for an object that does not exist.
    if "No endpoint" in exc.message:
        pytest.skip(f"{what}: this server has no such route yet ({exc.message}); lights up when it merges")


def skip_if_route_missing(call: Callable, what: str):
    """Run `call`; skip the test when the server has no such route yet (another branch builds it)."""
    from combo_sdk import NotFoundError

    try:
        return call()
    except NotFoundError as exc:
        _skip_for_missing_route(exc, what)
        raise


async def askip_if_route_missing(call: Callable, what: str):
    """`skip_if_route_missing` for a coroutine-returning `call`."""
    from combo_sdk import NotFoundError

    try:
        return await call()
    except NotFoundError as exc:
        _skip_for_missing_route(exc, what)
        raise
