"""Integrations → Webhooks in a real browser: Playwright driving the machine's Chromium.

Sign in → create a webhook → copy its secret once → send signed events to the
live server with httpx (and with the page's own curl + openssl example) → the
delivery appears with its callback attempts → redeliver → rotate the secret in
the UI → the old secret still verifies (grace period) and the new one too.

The server is a live daphne (tests.live.LiveCombo) with the immediate task
backend, so an accepted event runs and posts its result to a local receiver
(allowlisted with COMBO_WEBHOOK_ALLOWED_HOSTS) within the request. As in
test_browser.py, every page has requests to other hosts aborted and fails on
any CSP report or script error. Screenshots go to docs/screenshots/ when
COMBO_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.console.test_browser import PASSWORD, browser, screenshot, sign_in, watch  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")

from integrations.signing import sign, sign_timestamped  # noqa: E402
from tests.live import console_server  # noqa: E402

IMMEDIATE_TASKS = "django_tasks.backends.immediate.ImmediateBackend"


class Receiver:
    """The callback URL's server: answers 503 to the first result it gets, then 200."""

    def __init__(self):
        self.received: list[dict] = []
        state = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                state.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(503 if len(state.received) == 1 else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ci/combo-results"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def live(receiver):
    combo = console_server(env={
        "COMBO_TASKS_BACKEND": IMMEDIATE_TASKS,
        "COMBO_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "COMBO_WEBHOOK_RETRY_JITTER": "0",
    }, password=PASSWORD)
    yield combo
    combo.stop()




@pytest.fixture
def page(browser, live, watch):
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 860})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    context.route("**/*", watch.route)
    page = context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.set_default_timeout(15000)
    yield page
    context.close()
    watch.check()


def api(live) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.alice_key}"}, timeout=30)


def post_event(live, webhook_id: str, secret: str, payload: dict, *, timestamped: bool = False) -> httpx.Response:
    body = json.dumps(payload).encode()
    signature = sign_timestamped(secret, body) if timestamped else sign(secret, body)
    return httpx.post(
        f"{live.url}/v1/integrations/webhooks/{webhook_id}/events", content=body, timeout=30,
        headers={"Content-Type": "application/json", "X-Combo-Signature": signature},
    )


def test_a_webhook_is_made_its_secret_read_once_used_and_rotated_with_a_grace_period(page, live, receiver):
    with api(live) as http:
        http.post("/v1/combo/agents", json={"name": "PR reviewer", "instructions": "Review pull requests."})

    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Integrations").click()
    page.wait_for_url("**/console/integrations/webhooks/")
    assert page.get_by_text("No webhooks yet").is_visible()
    page.get_by_role("link", name="New webhook").click()
    page.get_by_label("Name").fill("PR reviews")
    page.get_by_label("Agent").select_option(label="PR reviewer")
    page.get_by_label("Question template").fill("Review this PR for me: {{ pull_request.title }}")
    page.get_by_label("Callback URL").fill(receiver.url)
    assert page.get_by_label("Enabled").is_checked()
    page.get_by_role("button", name="Create webhook").click()

    # The secret, once, with a copy button and a warning.
    shown = page.locator("#secret-value")
    secret = shown.input_value()
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", secret)
    assert page.get_by_text("This page will not show it again").is_visible()
    page.locator("[data-secret]").get_by_role("button", name="Copy", exact=True).click()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    events_url = page.locator("#events-url").input_value()
    match = re.fullmatch(rf"{re.escape(live.url)}/v1/integrations/webhooks/([0-9a-f-]{{36}})/events", events_url)
    assert match, events_url
    webhook_id = match.group(1)
    sample = page.locator("#signing-sample").text_content()
    screenshot(page, "webhooks", height=1400)

    # Any later page shows only the hint.
    page.goto(f"/console/integrations/webhooks/{webhook_id}/")
    assert secret not in page.content() and f"whsec_…{secret[-4:]}" in page.content()

    # A signed event from "CI": accepted, run, and its result posted (a 503, then a 200).
    accepted = post_event(live, webhook_id, secret, {"action": "opened", "pull_request": {"title": "Fix the parser"}})
    assert accepted.status_code == 202, accepted.text
    delivery_id = accepted.json()["data"]["delivery_id"]
    assert [json.loads(r["body"])["delivery_id"] for r in receiver.received] == [delivery_id, delivery_id]
    assert receiver.received[-1]["headers"]["X-Combo-Signature"] == sign(secret, receiver.received[-1]["body"])

    # The page's own example, copied as shown, signs with openssl and sends with curl.
    if shutil.which("curl") and shutil.which("openssl"):
        ran = subprocess.run(
            ["bash", "-c", sample], capture_output=True, text=True, timeout=60,
            env={**os.environ, "COMBO_WEBHOOK_SECRET": secret},
        )
        assert json.loads(ran.stdout)["data"]["status"] in ("queued", "succeeded"), ran.stdout + ran.stderr

    # A forged one is refused, and recorded.
    assert post_event(live, webhook_id, "whsec_" + "x" * 43, {"question": "let me in"}).status_code == 401

    page.get_by_role("navigation", name="Webhook").get_by_role("link", name="Deliveries").click()
    page.wait_for_url(f"**/console/integrations/webhooks/{webhook_id}/deliveries/")
    item = page.locator(f"#delivery-{delivery_id}")
    assert item.locator(".badge").first.text_content() == "Succeeded"
    assert "Review this PR for me: Fix the parser" in item.text_content()
    rows = item.locator("table.attempts tbody tr")
    assert rows.count() == 2
    assert "503" in rows.nth(0).text_content() and "Retry" in rows.nth(0).text_content()
    assert "200" in rows.nth(1).text_content() and "Delivered" in rows.nth(1).text_content()
    rejected = page.locator(".delivery").filter(has_text="10142")
    assert rejected.count() == 1 and "Rejected" in rejected.text_content()
    screenshot(page, "webhook-deliveries", height=1100)

    # Redeliver: a POST from the page; the receiver gets the same delivery again.
    item.get_by_role("button", name="Redeliver").click()
    page.wait_for_url(f"**/deliveries/#delivery-{delivery_id}")
    assert page.get_by_text("Sending the result again to 127.0.0.1").is_visible()
    assert page.locator(f"#delivery-{delivery_id} table.attempts tbody tr").count() == 3
    assert json.loads(receiver.received[-1]["body"])["delivery_id"] == delivery_id

    # Rotate in the UI, after the confirmation that explains the grace period.
    page.get_by_role("navigation", name="Webhook").get_by_role("link", name="Overview").click()
    page.get_by_role("link", name="Rotate secret").click()
    page.wait_for_url("**/rotate/")
    assert page.get_by_text("keeps verifying events for 24 hours").is_visible()
    page.get_by_role("button", name="Rotate secret").click()
    new_secret = page.locator("#secret-value").input_value()
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", new_secret) and new_secret != secret
    assert page.get_by_text("The old secret keeps verifying events until").is_visible()

    # The old secret still verifies (grace period), the new one too; a wrong one does not.
    old = post_event(live, webhook_id, secret, {"pull_request": {"title": "Old secret"}})
    new = post_event(live, webhook_id, new_secret, {"pull_request": {"title": "New secret"}}, timestamped=True)
    assert (old.status_code, new.status_code) == (202, 202), (old.text, new.text)
    assert post_event(live, webhook_id, "whsec_" + "y" * 43, {"question": "?"}).status_code == 401

    page.goto(f"/console/integrations/webhooks/{webhook_id}/deliveries/")
    assert page.locator(f"#delivery-{old.json()['data']['delivery_id']}").get_by_text("previous secret").is_visible()

    # Reveal: the current (new) secret, only on the POST's response.
    page.goto(f"/console/integrations/webhooks/{webhook_id}/")
    assert new_secret not in page.content()
    page.get_by_role("button", name="Reveal secret").click()
    assert page.locator("#secret-value").input_value() == new_secret
    page.goto(f"/console/integrations/webhooks/{webhook_id}/")
    assert new_secret not in page.content()

    # The list has it, with its last delivery's status.
    page.get_by_role("navigation", name="Integrations").get_by_role("link", name="Webhooks").click()
    row = page.get_by_role("row").filter(has_text="PR reviews")
    assert "PR reviewer" in row.text_content() and "127.0.0.1" in row.text_content()
    assert "Rejected" in row.text_content()  # the forged call came last


def test_a_refused_callback_url_is_shown_next_to_its_field(page, live):
    with api(live) as http:
        http.post("/v1/combo/agents", json={"name": "Any agent"})
    sign_in(page)
    page.goto("/console/integrations/webhooks/new/")
    page.get_by_label("Name").fill("Metadata grabber")
    page.get_by_label("Callback URL").fill("http://169.254.169.254/latest/meta-data/")
    page.get_by_role("button", name="Create webhook").click()
    error = page.locator("#id_callback_url_error")
    assert "a cloud metadata address" in error.text_content()
    assert page.get_by_label("Callback URL").get_attribute("aria-invalid") == "true"
    assert page.locator("#secret-value").count() == 0


@pytest.mark.parametrize("path", ["/console/integrations/webhooks/", "/console/integrations/webhooks/new/"])
def test_webhook_pages_fit_a_phone_screen(page, path):
    sign_in(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(path)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
