"""The console in a real browser: Playwright driving the machine's Chromium.

The server runs as `make run` does (daphne over collected static files, through
tests.live.LiveCombo). Chromium is Debian's `chromium` package, launched from
its path; nothing is downloaded. Every page is watched: a request to any host
but this server is aborted and fails the test, and so does any report of the
Content-Security-Policy blocking something.

Screenshots of the main pages go to docs/screenshots/ when COMBO_SCREENSHOTS=1.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

CHROMIUM = os.environ.get("COMBO_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (Debian: apt-get install chromium); "
        "the browser tests need it and never download a browser",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")

from accounts import keys  # noqa: E402
from tests.live import ROOT, console_server  # noqa: E402

PASSWORD = "correct horse battery"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = ROOT / "docs" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


@pytest.fixture(scope="module")
def live():
    # The built-in provider pauses between words, so an answer visibly streams.
    combo = console_server(env={"COMBO_BUILTIN_STREAM_DELAY": "0.03"}, password=PASSWORD)
    yield combo
    combo.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


class Watch:
    """What a page tried that it must not: other hosts, CSP violations, script errors."""

    def __init__(self):
        self.offsite: list[str] = []
        self.csp: list[str] = []
        self.errors: list[str] = []

    def route(self, route):
        if urlsplit(route.request.url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.offsite.append(route.request.url)
            route.abort()

    def console(self, message):
        if "Content Security Policy" in message.text:
            self.csp.append(message.text)

    def check(self):
        assert self.offsite == [], f"requests to other hosts: {self.offsite}"
        assert self.csp == [], f"CSP violations: {self.csp}"
        assert self.errors == [], f"page errors: {self.errors}"


@pytest.fixture
def watch():
    return Watch()


@pytest.fixture
def page(browser, live, watch):
    context = browser.new_context(base_url=live.url, viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live.url)
    context.route("**/*", watch.route)
    page = context.new_page()
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.set_default_timeout(15000)
    yield page
    context.close()
    watch.check()


def screenshot(page, name: str, *, height: int | None = None) -> None:
    """docs/screenshots/<name>.png; `height` takes that much of the whole page (PNGs stay < 300 KB)."""
    if os.environ.get("COMBO_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    options = {"path": str(SCREENSHOTS / f"{name}.png"), "animations": "disabled"}
    if height:
        width = page.viewport_size["width"]
        options |= {"full_page": True, "clip": {
            "x": 0, "y": 0, "width": width, "height": min(height, page.evaluate("document.body.scrollHeight")),
        }}
    page.screenshot(**options)
    assert (SCREENSHOTS / f"{name}.png").stat().st_size < 300_000, f"{name}.png is over 300 KB"


def sign_in(page, *, shot: bool = False) -> None:
    page.goto("/console/login/")
    if shot:
        screenshot(page, "sign-in")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/agents/")


def api(live, key: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key or live.alice_key}"}, timeout=20)


def test_a_key_is_made_read_once_used_revoked_and_then_refused(page, live):
    sign_in(page, shot=True)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Personal settings").click()
    page.wait_for_url("**/console/settings/api-keys/")

    page.get_by_label("Name").fill("browser test key")
    page.get_by_role("button", name="Create key").click()
    shown = page.locator("#new-key-value")
    key = shown.input_value()
    assert re.fullmatch(r"ragflow-[0-9A-Za-z]{46}", key)
    assert page.get_by_text("It will not be shown again").is_visible()
    page.get_by_role("button", name="Copy", exact=True).click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    screenshot(page, "api-keys", height=1300)

    page.reload()  # re-sends the create form: no second key, and the key is gone
    page.wait_for_url("**/console/settings/api-keys/")
    assert page.locator("#new-key-value").count() == 0
    assert key not in page.content()
    row = page.get_by_role("row").filter(has_text="browser test key")
    assert row.count() == 1 and keys.visible_prefix(key) in row.inner_text()

    with api(live, key) as http:
        assert http.get("/v1/combo/agents").status_code == 200

    row.get_by_role("link", name="Revoke").click()
    page.wait_for_url("**/revoke/")
    assert page.get_by_text("cannot be undone").is_visible()
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url("**/console/settings/api-keys/")
    assert "Revoked" in page.get_by_role("row").filter(has_text="browser test key").inner_text()

    with api(live, key) as http:
        refused = http.get("/v1/combo/agents")
    assert refused.status_code == 401 and refused.json()["code"] == 10012


def test_an_agent_made_in_the_ui_streams_its_answer_in_the_playground(page, live):
    sign_in(page)
    page.get_by_role("link", name="New agent").click()
    page.get_by_label("Name").fill("Support bot")
    page.get_by_label("Description").fill("Answers questions about Combo for the support team.")
    page.get_by_label("Instructions").fill("You answer questions about Combo.\nBriefly and kindly.")
    page.get_by_label("Opening message").fill("Hi! Ask me anything about Combo.")
    page.get_by_role("button", name="Create agent").click()
    page.wait_for_url(re.compile(r".*/console/agents/[0-9a-f-]{36}/playground/$"))
    agent_id = page.url.split("/")[-3]
    assert page.get_by_text("Hi! Ask me anything about Combo.").is_visible()

    page.wait_for_selector("#send:enabled")  # the page's script is ready: Enter sends
    page.get_by_label("Your question").fill("What is Combo?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg-assistant").last
    # The first piece arrives while the answer is still streaming...
    page.wait_for_function(
        """() => { const m = [...document.querySelectorAll('.msg-assistant')].pop();
                   return m.dataset.state === 'streaming' && m.querySelector('.msg-text').textContent.length > 0; }"""
    )
    first = answer.locator(".msg-text").text_content()
    page.wait_for_function(
        """() => { const m = [...document.querySelectorAll('.msg-assistant')].pop();
                   return m.dataset.state !== 'streaming' || m.querySelector('.msg-text').textContent.length > 90; }"""
    )
    screenshot(page, "playground")
    # ...and the rest follows, in more pieces, into the same bubble.
    page.wait_for_selector(".msg-assistant[data-state='done']")
    full = answer.locator(".msg-text").text_content()
    assert full.startswith("No language model is configured") and len(full) > len(first)
    assert int(answer.get_attribute("data-chunks")) > 1
    session_id = page.locator("#session-id").text_content()
    assert re.fullmatch(r"[0-9a-f-]{36}", session_id)

    page.get_by_label("Your question").fill("And how do I call it?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_function("() => document.querySelectorAll('.msg-assistant[data-state=done]').length === 2")
    assert page.locator("#session-id").text_content() == session_id
    with api(live) as http:
        stored = http.get(f"/v1/combo/sessions/{session_id}").json()["data"]
        agent = http.get(f"/v1/combo/agents/{agent_id}").json()["data"]
    assert stored["agent_id"] == agent_id
    # The browser sent the textarea's lines with CRLF; they are stored with LF.
    assert agent["instructions"] == "You answer questions about Combo.\nBriefly and kindly."
    assert [m["role"] for m in stored["messages"]["items"]] == ["assistant", "user", "assistant", "user", "assistant"]
    assert stored["messages"]["items"][2]["content"] == full
    # The page held its credential in memory only.
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0

    with api(live) as http:  # company for the list
        http.post("/v1/combo/agents", json={
            "name": "PR reviewer", "description": "Reviews pull requests for style and risky changes.",
            "llm": {"provider": "builtin"},
        })
        http.post("/v1/combo/agents", json={
            "name": "Release notes writer", "instructions": "Turn merged changes into release notes.",
        })
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    assert page.get_by_role("link", name="Support bot", exact=True).is_visible()
    screenshot(page, "agents")


def test_the_playground_shows_tiny_passage_scores_meaningfully(page, live):
    # One small file gives bm25 scores of a few millionths: they must not all read "0.00".
    with api(live) as http:
        agent_id = http.post("/v1/combo/agents", json={"name": "Scores"}).json()["data"]["id"]
    references = [
        {"id": f"f:{n}", "file_id": "f", "file_name": f"notes-{n}.md", "content": f"passage {n}",
         "score": score, "position": {"line": n + 1}}
        for n, score in enumerate([2.1e-06, 1.05e-06, 0.0])
    ]
    stream = (
        "event: message\ndata: " + json.dumps({"answer": "From your notes.", "reference": references}) + "\n\n"
        "event: done\ndata: " + json.dumps({"session_id": None}) + "\n\n"
    )
    page.route("**/completions", lambda route: route.fulfill(
        status=200, headers={"Content-Type": "text/event-stream"}, body=stream,
    ))
    sign_in(page)
    page.goto(f"/console/agents/{agent_id}/playground/")
    page.wait_for_selector("#send:enabled")
    page.get_by_label("Your question").fill("What do my notes say?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-state='done']")
    refs = page.locator(".msg-assistant .msg-refs li")
    assert refs.count() == 3
    metas = refs.locator(".ref-meta").all_text_contents()
    assert [re.search(r"score (\S+)", meta).group(1) for meta in metas] == ["0.0000021", "0.00000105", "0"], metas
    # A bar relative to the best passage of this answer (the API's scores compare within one answer).
    bars = refs.locator("meter.ref-score")
    assert [float(bars.nth(n).get_attribute("value")) for n in range(3)] == [1.0, 0.5, 0.0]
    assert bars.first.get_attribute("aria-label") == "Relevance: the best passage in this answer"
    assert bars.nth(1).get_attribute("aria-label") == "Relevance: 50% of the best passage in this answer"


def test_without_javascript_the_playground_cannot_send_and_points_to_the_api_page(browser, live):
    with api(live) as http:
        agent_id = http.post("/v1/combo/agents", json={"name": "Quiet helper"}).json()["data"]["id"]
    context = browser.new_context(base_url=live.url, java_script_enabled=False)
    try:
        page = context.new_page()
        sign_in(page)
        page.goto(f"/console/agents/{agent_id}/playground/")
        # Send would submit the form to the page itself and drop the question.
        assert page.get_by_role("button", name="Send").is_disabled()
        notice = page.locator("noscript .callout")  # Playwright's text matching skips <noscript>
        assert notice.is_visible() and notice.text_content().startswith("The playground needs JavaScript.")
        assert notice.locator("a").get_attribute("href") == f"/console/api/?agent={agent_id}"
    finally:
        context.close()


def test_the_api_page_has_real_samples_and_downloads_the_postman_collection(page, live):
    with api(live) as http:
        agent_id = http.post("/v1/combo/agents", json={"name": "Docs helper"}).json()["data"]["id"]
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="API").click()
    page.wait_for_url("**/console/api/")
    page.get_by_label("Samples use the agent").select_option(label="Docs helper")
    page.wait_for_url(f"**/console/api/?agent={agent_id}")
    assert page.locator("#base-url").input_value() == f"{live.url}/v1"
    assert f"{live.url}/v1/combo/agents/{agent_id}/completions" in page.locator("#sample-curl").text_content()
    assert f'agent_id="{agent_id}"' in page.locator("#sample-python").text_content()
    screenshot(page, "api", height=1752)

    with page.expect_download() as info:
        page.get_by_role("link", name="Download Postman collection").click()
    download = info.value
    assert download.suggested_filename == "combo.postman_collection.json"
    collection = json.loads(Path(download.path()).read_text())
    assert collection["info"]["schema"].endswith("/v2.1.0/collection.json")
    assert {v["key"]: v["value"] for v in collection["variable"]}["base_url"] == f"{live.url}/v1"


def test_swagger_ui_renders_offline_under_the_csp(page, watch):
    page.goto("/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Combo API" in page.locator(".swagger-ui .info .title").text_content()
    assert page.locator(".opblock").count() >= 15
    page.locator(".opblock-summary").first.click()
    page.wait_for_selector(".opblock-body")
    assert watch.offsite == []


def test_keyboard_alone_signs_in_and_skips_to_the_content(page):
    page.goto("/console/login/")
    # Chromium applies autofocus a moment after load: wait for it (fails if it never comes).
    page.wait_for_function("document.activeElement && document.activeElement.id === 'id_username'", timeout=5000)
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "id_password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/agents/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content" and skip.is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"


@pytest.mark.parametrize("path", ["/console/agents/", "/console/settings/api-keys/", "/console/api/"])
def test_pages_fit_a_phone_screen(page, path):
    sign_in(page)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(path)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_agent_edit_meanwhile_is_shown_not_overwritten(page, live):
    with api(live) as http:
        agent = http.post("/v1/combo/agents", json={
            "name": "Billing helper", "instructions": "Answer billing questions.",
        }).json()["data"]
    sign_in(page)
    page.goto(f"/console/agents/{agent['id']}/")
    page.get_by_label("Description").fill("Helps customers with invoices.")
    with api(live) as http:  # someone else changes the instructions meanwhile
        assert http.patch(f"/v1/combo/agents/{agent['id']}", json={
            "instructions": "Answer billing questions; refunds go to a person.",
        }).status_code == 200
    page.get_by_role("button", name="Save").click()

    alert = page.get_by_text("This agent was changed since you opened this page")
    alert.wait_for()
    assert "Instructions" in alert.text_content() and "Nothing was saved" in alert.text_content()
    saved = page.locator(".edit-conflict")
    assert saved.is_visible() and "refunds go to a person" in saved.inner_text()
    # The user's own input is still in the form, the other change is not lost.
    assert page.get_by_label("Description").input_value() == "Helps customers with invoices."
    assert page.get_by_label("Instructions").input_value() == "Answer billing questions."
    screenshot(page, "edit-conflict", height=1100)
    with api(live) as http:
        stored = http.get(f"/v1/combo/agents/{agent['id']}").json()["data"]
    assert stored["description"] == "" and stored["instructions"].endswith("refunds go to a person.")

    # Merged by hand and saved again: this page carries the new version, so it saves.
    page.get_by_label("Instructions").fill("Answer billing questions; refunds go to a person.")
    page.get_by_role("button", name="Save").click()
    page.wait_for_load_state()
    assert page.get_by_text("was changed since you opened this page").count() == 0
    with api(live) as http:
        stored = http.get(f"/v1/combo/agents/{agent['id']}").json()["data"]
    assert stored["description"] == "Helps customers with invoices."
    assert stored["instructions"] == "Answer billing questions; refunds go to a person."
