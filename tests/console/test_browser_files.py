"""Knowledge files in a real browser: uploads with progress, live status, errors on their rows.

The same set-up as test_browser.py (daphne over collected static files, Debian's
Chromium, every request to another host aborted, CSP reports fail the test),
plus the real task worker: `manage.py db_worker` runs as its own process for
each test that needs files read, so a status goes queued → ready while the page
watches, exactly as under `make run`.

Screenshot docs/screenshots/agent-files.png when COMBO_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# The browser fixtures are test_browser.py's, imported by name (so the test
# functions' `page` argument shadows the import: ruff's F811, on purpose).
# ruff: noqa: F811
from tests.console.test_browser import (  # noqa: F401
    PASSWORD,
    SCREENSHOTS,
    api,
    browser,
    page,
    sign_in,
    watch,
)
from tests.live import ROOT, console_server

LIMIT = 300_000  # COMBO_MAX_UPLOAD_BYTES for this server, so "too large" is quick to reach

POLICY = b"""# Returns policy

## Refunds

Refunds are paid within 14 days after the parcel reaches our Rotterdam warehouse.
The money goes back to the card or account you paid with.

## Exchanges

Exchanging an item for another size is free within 30 days of delivery.
"""
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" + b"\x00" * 64
PDF_NAMED_TXT = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"


@pytest.fixture(scope="module")
def live():
    combo = console_server(env={"COMBO_MAX_UPLOAD_BYTES": str(LIMIT)}, password=PASSWORD)
    yield combo
    combo.stop()


@pytest.fixture
def worker(live):
    """`manage.py db_worker` beside the server for this test, as `manage.py serve` runs it."""
    log_path = Path(live.data_dir) / "db_worker.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "db_worker", "--no-startup-delay", "--interval", "0.2", "--no-reload"],
            cwd=ROOT, env=live.env, stdout=log, stderr=subprocess.STDOUT,
        )
        yield process
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode in (0, -15), log_path.read_text()[-2000:]


def new_agent(live, name: str) -> str:
    with api(live) as http:
        response = http.post("/v1/combo/agents", json={"name": name, "llm": {"provider": "builtin"}})
    assert response.status_code == 201, response.text
    return response.json()["data"]["id"]


def agent_file_ids(live, agent_id: str) -> list[str]:
    with api(live) as http:
        return http.get(f"/v1/combo/agents/{agent_id}").json()["data"]["file_ids"]


def open_agent(page, name: str) -> None:
    """From the agents list to the agent's edit page, as a user would."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Agents").click()
    page.get_by_role("link", name=f"Edit {name}").click()
    page.wait_for_url(re.compile(r".*/console/agents/[0-9a-f-]{36}/$"))


def record_rows(page) -> None:
    """Keep every status and progress value each row shows, to check what the user saw."""
    page.evaluate(
        """() => {
            window.seen = {};
            const note = (row) => {
                const name = row.querySelector('td[data-field="name"]').textContent;
                const entry = window.seen[name] = window.seen[name] || {statuses: [], progress: []};
                const status = row.querySelector('[data-field="status"]').textContent;
                if (status && entry.statuses[entry.statuses.length - 1] !== status) entry.statuses.push(status);
                const bar = row.querySelector('[data-field="progress"]');
                if (!bar.hidden && entry.progress[entry.progress.length - 1] !== bar.value) entry.progress.push(bar.value);
            };
            new MutationObserver(() => document.querySelectorAll('tr.file-row').forEach(note))
                .observe(document.querySelector('[data-file-table] tbody'),
                         {subtree: true, childList: true, attributes: true, characterData: true});
        }"""
    )


def upload(page, *files: tuple[str, str, bytes]) -> None:
    page.get_by_label("Choose files to upload").set_input_files(
        [{"name": name, "mimeType": mime, "buffer": data} for name, mime, data in files]
    )


def row(page, name: str):
    return page.locator("tr.file-row").filter(has=page.locator(f'td[data-field="name"]:text-is("{name}")'))


def test_an_upload_shows_its_progress_goes_ready_live_and_the_agent_cites_it(page, live, worker):
    agent_id = new_agent(live, "Returns helper")
    with api(live) as http:  # a file of alice's that this agent does not use (yet)
        spare = http.post("/v1/combo/files", files={"file": ("shipping-rates.csv", b"zone,price\nEU,4.95\n")})
        assert spare.status_code == 201, spare.text
    sign_in(page)
    open_agent(page, "Returns helper")
    assert page.get_by_text("No files yet. Upload some below").is_visible()
    record_rows(page)

    upload(page, ("returns-policy.md", "text/markdown", POLICY))
    policy = row(page, "returns-policy.md")
    policy.locator('[data-field="status"]', has_text="Ready").wait_for(timeout=30000)
    seen = page.evaluate("window.seen['returns-policy.md']")
    assert seen["progress"][-1] == 100 and policy.get_attribute("data-progress") == "100"
    statuses = [status for status in seen["statuses"] if status != "Waiting"]
    assert statuses[0] == "Uploading" and statuses[-1] == "Ready", seen
    assert set(seen["statuses"]) <= {"Waiting", "Uploading", "Queued", "Processing", "Ready"}
    assert "Queued" in seen["statuses"] or "Processing" in seen["statuses"]  # it changed while we watched
    assert policy.locator("td[data-field=kind]").text_content() == "markdown"
    assert re.fullmatch(r"\d+ chunks?", policy.locator('[data-field="detail"]').text_content())
    assert not policy.locator("progress").is_visible()
    file_id = policy.get_attribute("data-file-id")
    assert agent_file_ids(live, agent_id) == [file_id]

    # Refused at once, each with the server's reason on its own row; the good file is untouched.
    upload(page, ("x.png", "image/png", PNG), ("notes.txt", "text/plain", PDF_NAMED_TXT))
    png = row(page, "x.png")
    png.locator(".file-error").wait_for()
    assert png.locator('[data-field="status"]').text_content() == "Not uploaded"
    error = png.locator(".file-error").text_content()
    assert error.startswith("Combo can't read this kind of file. This file is a PNG image")
    assert "HTTP 415, code 10121" in error
    mismatch = row(page, "notes.txt")
    mismatch.locator(".file-error").wait_for()
    assert mismatch.locator(".file-error").text_content().startswith(
        "The file's name and its content don't match. This file is a PDF but is named .txt")
    assert "code 10122" in mismatch.locator(".file-error").text_content()
    assert png.get_by_role("button", name="Dismiss x.png").is_visible()
    assert not png.get_by_role("button", name="Try again x.png").is_visible()  # trying again changes nothing
    assert agent_file_ids(live, agent_id) == [file_id]
    options = page.get_by_label("Attach a file you uploaded before").locator("option").all_text_contents()
    assert options[0] == "Choose a file…" and len(options) == 2
    assert re.fullmatch(r"shipping-rates\.csv \(csv, (queued|processing|ready)\)", options[1]), options
    _screenshot_files_section(page)

    mismatch.get_by_role("button", name="Dismiss notes.txt").click()
    assert row(page, "notes.txt").count() == 0
    assert page.evaluate("document.activeElement.id") == "upload-input"

    # The same bytes again under another name: no second row, no second file.
    upload(page, ("policy-copy.md", "text/markdown", POLICY))
    page.wait_for_selector("tr.file-row.row-flash")  # the existing row lights up...
    assert row(page, "policy-copy.md").count() == 0 and row(page, "returns-policy.md").count() == 1  # ...alone

    # After a reload the server renders the same row.
    page.reload()
    assert row(page, "returns-policy.md").locator('[data-field="status"]').text_content() == "Ready"

    # The playground answers from it and names it.
    page.get_by_role("link", name="Open playground").click()
    page.wait_for_selector("#send:enabled")  # the page's script is ready: Enter sends
    page.get_by_label("Your question").fill("How many days until refunds are paid?")
    page.keyboard.press("Enter")
    page.wait_for_selector(".msg-assistant[data-state='done']")
    answer = page.locator(".msg-assistant").last
    assert "14 days" in answer.locator(".msg-text").text_content()
    sources = answer.locator(".msg-refs .ref-file")
    assert sources.first.text_content() == "returns-policy.md"
    assert "Refunds" in answer.locator(".msg-refs .ref-meta").first.text_content()
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0


def _screenshot_files_section(page) -> None:
    if os.environ.get("COMBO_SCREENSHOTS") != "1":
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    box = page.locator("#files").bounding_box()
    scroll = page.evaluate("window.scrollY")
    top = max(0, box["y"] + scroll - 24)
    path = SCREENSHOTS / "agent-files.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled", clip={
        "x": 0, "y": top, "width": page.viewport_size["width"], "height": box["height"] + 48,
    })
    assert path.stat().st_size < 300_000, "agent-files.png is over 300 KB"


def test_too_large_files_and_rate_limits_are_explained_on_their_rows(page, live):
    new_agent(live, "Limits helper")
    sign_in(page)
    open_agent(page, "Limits helper")

    # Over the limit: refused before a byte is sent, in the same words as the server's 10123.
    upload(page, ("big.txt", "text/plain", b"words " * 100_000))
    big = row(page, "big.txt")
    big.locator(".file-error").wait_for()
    assert big.locator(".file-error").text_content() == (
        "This file is too large. It is 585.9\u00a0KB; the limit is 293.0\u00a0KB. Split it into smaller files."
    )
    upload(page, ("just-over.txt", "text/plain", b"w" * (LIMIT + 1)))
    assert "It is 300,001\u00a0bytes; the limit is 300,000\u00a0bytes." in row(page, "just-over.txt").text_content()

    # The server's own 413 (10123), when the page's check is out of date, lands on the row too.
    page.evaluate("document.querySelector('[data-files]').dataset.maxBytes = String(10 * 1024 * 1024)")
    upload(page, ("bigger.txt", "text/plain", b"word " * (LIMIT // 5 + 20_000)))
    bigger = row(page, "bigger.txt")
    bigger.locator(".file-error").wait_for()
    text = bigger.locator(".file-error").text_content()
    assert text.startswith("This file is too large.") and "code 10123" in text, text
    assert bigger.locator('[data-field="status"]').text_content() == "Not uploaded"

    # 429: the row says why and when it tries again, then the upload goes through.
    answered = []

    def too_many_once(route):
        if route.request.method == "POST" and not answered:
            answered.append(route.request.url)
            route.fulfill(status=429, headers={"Retry-After": "2", "Content-Type": "application/json"}, body=(
                '{"code": 10090, "message": "Too many requests.", "data": {"request_id": "req-test", '
                '"family": "uploads", "limit": 10, "retry_after": 2}}'))
        else:
            route.continue_()

    page.route("**/v1/combo/files", too_many_once)
    upload(page, ("later.md", "text/markdown", b"# Later\n\nUploaded after a pause.\n"))
    later = row(page, "later.md")
    later.locator(".file-error", has_text="Too many uploads in the last minute.").wait_for()
    waiting = later.locator(".file-error").text_content()
    assert "This server takes 10 uploads a minute; trying again in 2 seconds." in waiting, waiting
    assert later.locator('[data-field="status"]').text_content() == "Waiting"
    later.locator('[data-field="status"]', has_text="Queued").wait_for(timeout=10000)
    assert len(answered) == 1 and later.locator(".file-error").count() == 0


def test_the_files_page_and_the_keyboard(page, live):
    agent_id = new_agent(live, "Keyboard helper")
    with api(live) as http:
        uploaded = http.post("/v1/combo/files", files={"file": ("glossary.md", b"# Glossary\n\nA term.\n")},
                             data={"agent_id": agent_id})
        assert uploaded.status_code == 201, uploaded.text
        loose = http.post("/v1/combo/files", files={"file": ("spare.txt", b"Spare notes.\n")})
        assert loose.status_code == 201
    sign_in(page)
    open_agent(page, "Keyboard helper")
    glossary = row(page, "glossary.md")
    assert glossary.locator('[data-field="status"]').text_content() in ("Queued", "Processing", "Ready")

    # Tab reaches the upload control, and the drop zone shows where focus is.
    page.locator("#id_max_tokens").focus()
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "upload-input":
            break
    else:
        raise AssertionError("Tab never reached the upload control")
    assert page.evaluate(
        "getComputedStyle(document.querySelector('[data-dropzone]')).outlineStyle") == "solid"

    # Attach the spare file with the keyboard, then detach the glossary with it.
    page.get_by_label("Attach a file you uploaded before").focus()
    page.keyboard.type("spare")  # a closed select jumps to the option starting with what is typed
    assert page.get_by_label("Attach a file you uploaded before").input_value() == loose.json()["data"]["id"]
    page.keyboard.press("Tab")
    with page.expect_navigation(url="**/#files"):
        page.keyboard.press("Enter")
    assert page.get_by_text("Attached “spare.txt” to Keyboard helper.").is_visible()
    row(page, "glossary.md").get_by_role("button", name="Detach glossary.md").focus()
    with page.expect_navigation(url="**/#files"):
        page.keyboard.press("Enter")
    assert page.get_by_text("Detached “glossary.md”. It is still in your files.").is_visible()
    assert row(page, "glossary.md").count() == 0 and row(page, "spare.txt").count() == 1
    assert [f for f in agent_file_ids(live, agent_id)] == [loose.json()["data"]["id"]]

    # The Files page lists both; deleting asks first.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Files").click()
    page.wait_for_url("**/console/files/")
    assert row(page, "glossary.md").count() == 1
    assert row(page, "spare.txt").get_by_role("link", name="Keyboard helper").is_visible()
    row(page, "glossary.md").get_by_role("link", name="Delete glossary.md").click()
    page.wait_for_url("**/delete/")
    assert page.get_by_text("No agent uses it.").is_visible()
    page.get_by_role("button", name="Delete file").click()
    page.wait_for_url("**/console/files/")
    assert page.get_by_text("Deleted “glossary.md”.").is_visible() and row(page, "glossary.md").count() == 0
    with api(live) as http:
        assert http.get(f"/v1/combo/files/{uploaded.json()['data']['id']}").status_code == 404

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
