// Knowledge files: uploads with a progress bar per file, live status, and
// errors on each file's row (the agent page's Files section and the Files page).
//
// Each file is sent with XMLHttpRequest (for upload progress events) to
// POST /v1/combo/files, one at a time, with the agent's id when the page has
// one; then GET /v1/combo/files/{id} is polled every second until the file is
// ready or failed. Rows the server rendered while still queued or processing
// are polled the same way.
//
// Credential: a short-lived JWT from GET /console/token, kept in this closure
// only (never an API key, never localStorage). Rendering: every server or
// user string goes in through textContent, never innerHTML.
(function () {
  "use strict";

  const root = document.querySelector("[data-files]");
  if (!root) { return; }

  const zone = root.querySelector("[data-upload]");
  const input = document.getElementById("upload-input");
  const dropzone = root.querySelector("[data-dropzone]");
  const table = root.querySelector("[data-file-table]");
  const tbody = table.tBodies[0];
  const tableWrap = root.querySelector("[data-files-table-wrap]");
  const emptyNote = root.querySelector("[data-files-empty]");
  const template = document.getElementById("file-row-template");
  const announcer = root.querySelector("[data-announcer]");
  const attachSelect = root.querySelector("[data-attach-form] select");
  const config = root.dataset;

  const POLL_MS = 1000;
  const SLOW_POLL_MS = 5000; // after two minutes of polling a file
  const SLOW_AFTER_MS = 120000;
  const STATUS_LABELS = {
    waiting: "Waiting",
    uploading: "Uploading",
    queued: "Queued",
    processing: "Processing",
    ready: "Ready",
    failed: "Failed",
    refused: "Not uploaded",
    gone: "Deleted",
  };
  // The API's upload refusals (docs/knowledge.md), as a heading for the server's own advice.
  const REFUSALS = {
    10120: "This file is empty.",
    10121: "Combo can't read this kind of file.",
    10122: "The file's name and its content don't match.",
    10123: "This file is too large.",
    10124: "No file was sent.",
    10001: "The upload was refused.",
    10003: "The upload was refused.",
    10090: "Too many uploads in the last minute.",
  };

  const queue = []; // {file, row}
  let uploading = false;
  const polling = new Map(); // file id -> {row, since}
  let pollTimer = null;

  const ConsoleError = window.ComboConsole.ConsoleError;

  // --- DOM helpers (textContent only) ------------------------------------------

  const el = window.ComboConsole.el;

  function announce(text) {
    if (!announcer) { return; }
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = text; }, 50);
  }

  // Django's filesizeformat: "512 bytes", "1.5 KB", "20.0 MB" (powers of 1024, a no-break space).
  function formatSize(bytes) {
    if (bytes < 1024) { return bytes + (bytes === 1 ? "\u00a0byte" : "\u00a0bytes"); }
    const units = ["KB", "MB", "GB", "TB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toFixed(1) + "\u00a0" + units[unit];
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function fields(row, name) {
    return row.querySelectorAll('[data-field="' + name + '"]');
  }

  function setField(row, name, text) {
    fields(row, name).forEach(function (node) { node.textContent = text; });
  }

  function setStatus(row, status) {
    const badge = row.querySelector('[data-field="status"]');
    badge.className = "badge badge-" + status;
    badge.textContent = STATUS_LABELS[status] || status;
    row.dataset.status = status;
  }

  // Replaces the detail cell's content with text and/or nodes.
  function setDetail(row) {
    const detail = row.querySelector('[data-field="detail"]');
    detail.replaceChildren();
    Array.prototype.slice.call(arguments, 1).forEach(function (part) {
      if (part === null || part === undefined || part === "") { return; }
      detail.appendChild(typeof part === "string" ? document.createTextNode(part) : part);
    });
  }

  function setProgress(row, fraction) {
    const bar = row.querySelector('[data-field="progress"]');
    const percent = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    bar.hidden = false;
    bar.value = percent;
    bar.textContent = percent + "%";
    row.dataset.progress = String(percent);
    setDetail(row, percent < 100 ? "Uploading… " + percent + "%" : "Uploaded 100%, waiting for the server…");
  }

  function hideProgress(row) {
    row.querySelector('[data-field="progress"]').hidden = true;
  }

  function showButtons(row, which) {
    row.querySelectorAll("[data-action]").forEach(function (button) {
      button.hidden = which.indexOf(button.dataset.action) === -1;
    });
  }

  function syncEmpty() {
    const empty = tbody.rows.length === 0;
    tableWrap.hidden = empty;
    if (emptyNote) { emptyNote.hidden = !empty; }
  }

  function rowFor(fileId) {
    return tbody.querySelector('tr[data-file-id="' + CSS.escape(fileId) + '"]');
  }

  // --- Rendering a file from the API --------------------------------------------

  function describeReady(file) {
    let text = plural(file.chunk_count, "chunk");
    if (file.pages) { text += " · " + plural(file.pages, "page"); }
    return text;
  }

  function renderFile(row, file) {
    row.dataset.fileId = file.id;
    setField(row, "name", file.name);
    setField(row, "kind", file.kind);
    setField(row, "size", formatSize(file.size));
    setStatus(row, file.status);
    if (file.status === "ready") {
      hideProgress(row);
      setDetail(row, describeReady(file));
    } else if (file.status === "failed") {
      hideProgress(row);
      setDetail(row, el("span", "file-reason", file.failure_reason || "It could not be read."));
    } else {
      setDetail(row, file.status === "processing" ? "Reading and indexing…" : "Waiting to be read…");
    }
    row.querySelectorAll("[data-url-template]").forEach(function (node) {
      const url = node.getAttribute(node.tagName === "FORM" ? "action" : "href").replace(config.idPlaceholder, file.id);
      node.setAttribute(node.tagName === "FORM" ? "action" : "href", url);
      node.removeAttribute("data-url-template");
      node.hidden = false;
    });
    showButtons(row, []);
  }

  // A row for a file the browser is about to upload.
  function newRow(file) {
    const row = template.content.firstElementChild.cloneNode(true);
    setField(row, "name", file.name);
    setField(row, "kind", "");
    setField(row, "size", formatSize(file.size));
    setStatus(row, "waiting");
    setDetail(row, "Waiting to upload…");
    tbody.appendChild(row);
    syncEmpty();
    return row;
  }

  // Shows why an upload did not happen, with the server's advice, on the file's row.
  function refuse(row, title, message, meta, options) {
    options = options || {};
    hideProgress(row);
    setStatus(row, options.status || "refused");
    const box = el("div", "file-error");
    box.setAttribute("role", "alert");
    box.appendChild(el("strong", null, title));
    if (message && message !== title) { box.appendChild(document.createTextNode(" " + message)); }
    if (meta) {
      box.appendChild(document.createTextNode(" "));
      box.appendChild(el("span", "file-error-meta", meta));
    }
    if (options.loginUrl) {
      box.appendChild(document.createTextNode(" "));
      const link = el("a", null, "Sign in again");
      link.href = options.loginUrl;
      box.appendChild(link);
    }
    setDetail(row, box);
    showButtons(row, options.retry ? ["retry", "dismiss"] : ["dismiss"]);
  }

  // --- The credential --------------------------------------------------------------

  const accessToken = window.ComboConsole.tokenSource(config.tokenUrl);

  function parseJson(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function metaOf(status, envelope) {
    const parts = [];
    if (status) { parts.push("HTTP " + status); }
    if (envelope && envelope.code) { parts.push("code " + envelope.code); }
    const requestId = envelope && envelope.data && envelope.data.request_id;
    if (requestId) { parts.push("request " + requestId); }
    return parts.join(", ");
  }

  // --- Uploading -------------------------------------------------------------------

  // One POST /v1/combo/files; resolves {status, envelope, retryAfter} (status 0: no answer).
  function send(access, item) {
    return new Promise(function (resolve) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", config.filesUrl);
      // Same-origin XHR always carries the session cookie; /v1 ignores it and
      // reads the bearer token only.
      xhr.setRequestHeader("Authorization", "Bearer " + access);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable && event.total > 0) { setProgress(item.row, event.loaded / event.total); }
      });
      xhr.upload.addEventListener("load", function () { setProgress(item.row, 1); });
      xhr.addEventListener("load", function () {
        resolve({
          status: xhr.status,
          envelope: parseJson(xhr.responseText),
          retryAfter: Number(xhr.getResponseHeader("Retry-After")) || 0,
        });
      });
      xhr.addEventListener("error", function () { resolve({ status: 0 }); });
      xhr.addEventListener("abort", function () { resolve({ status: 0 }); });
      const form = new FormData();
      form.append("file", item.file, item.file.name);
      if (config.agentId) { form.append("agent_id", config.agentId); }
      xhr.send(form);
    });
  }

  function wait(ms) {
    return new Promise(function (resolve) { window.setTimeout(resolve, ms); });
  }

  // Too many uploads in the last minute: say so on the row, count down, then try again.
  async function waitOutRateLimit(item, result) {
    const envelope = result.envelope || {};
    let seconds = result.retryAfter || (envelope.data && envelope.data.retry_after) || 10;
    const limit = envelope.data && envelope.data.limit;
    const why = limit ? "This server takes " + limit + " uploads a minute; trying again in " : "Trying again in ";
    refuse(item.row, REFUSALS[10090], why, metaOf(result.status, envelope), { status: "waiting" });
    showButtons(item.row, []);
    const box = item.row.querySelector(".file-error");
    const countdown = el("span", "file-countdown");
    const meta = box.querySelector(".file-error-meta");
    box.insertBefore(countdown, meta ? meta.previousSibling : null); // before the space and the meta line
    while (seconds > 0) {
      countdown.textContent = plural(seconds, "second") + ".";
      await wait(1000);
      seconds -= 1;
    }
  }

  async function uploadOne(item) {
    const row = item.row;
    const name = item.file.name;
    showButtons(row, []);
    const maxBytes = Number(config.maxBytes);
    if (item.file.size > maxBytes) {
      let size = formatSize(item.file.size);
      let limit = formatSize(maxBytes);
      if (size === limit) { // just over: the rounded sizes would read the same
        size = item.file.size.toLocaleString("en-US") + "\u00a0bytes";
        limit = maxBytes.toLocaleString("en-US") + "\u00a0bytes";
      }
      refuse(row, REFUSALS[10123], "It is " + size + "; the limit is " + limit + ". Split it into smaller files.");
      announce(name + " is too large to upload.");
      return;
    }
    setStatus(row, "uploading");
    setProgress(row, 0);
    let result;
    for (let attempt = 0; ; attempt += 1) {
      try {
        result = await send(await accessToken(false), item);
        if (result.status === 401) {
          // The token expired between issue and use: get a fresh one, once.
          result = await send(await accessToken(true), item);
        }
      } catch (error) {
        if (error instanceof ConsoleError) {
          refuse(row, error.message, null, null, {
            retry: Boolean(error.retry), loginUrl: error.login ? config.loginUrl : null,
          });
          announce(name + ": " + error.message);
          return;
        }
        throw error;
      }
      if (result.status !== 429 || attempt >= 5) { break; }
      await waitOutRateLimit(item, result);
      setStatus(row, "uploading");
      setProgress(row, 0);
    }

    const envelope = result.envelope || {};
    if (result.status === 200 || result.status === 201) {
      const file = envelope.data;
      const existing = rowFor(file.id);
      let target = row;
      if (existing && existing !== row) {
        // The same bytes were uploaded before: the server answered with that file.
        row.remove();
        target = existing;
        target.classList.add("row-flash");
        window.setTimeout(function () { target.classList.remove("row-flash"); }, 2500);
      }
      renderFile(target, file);
      removeAttachOption(file.id);
      if (result.status === 200) {
        announce(name + " was uploaded before as " + file.name + "; " + (STATUS_LABELS[file.status] || file.status) + ".");
      } else {
        announce(name + " uploaded; it is being read.");
      }
      watch(file.id, target);
      return;
    }
    if (result.status === 0) {
      refuse(row, "The upload was interrupted.",
        "The connection closed before the server answered. If the file is over " + formatSize(Number(config.maxBytes)) +
        ", it is too large; otherwise try again.", null, { retry: true });
    } else if (result.status === 401) {
      refuse(row, "Your console session has ended.", null, metaOf(result.status, envelope), { loginUrl: config.loginUrl });
    } else if (result.status === 429) {
      refuse(row, REFUSALS[10090], "Wait a minute and try again.", metaOf(result.status, envelope), { retry: true });
    } else if (result.status >= 500) {
      refuse(row, "The server could not take this file.", envelope.message || "Try again in a moment.",
        metaOf(result.status, envelope), { retry: true });
    } else {
      refuse(row, REFUSALS[envelope.code] || "The upload was refused.", envelope.message,
        metaOf(result.status, envelope), { retry: !REFUSALS[envelope.code] });
    }
    announce(name + " was not uploaded: " + (envelope.message || "see its row") + ".");
  }

  async function pump() {
    if (uploading) { return; }
    uploading = true;
    try {
      while (queue.length) { await uploadOne(queue.shift()); }
    } finally {
      uploading = false;
    }
  }

  function addFiles(fileList) {
    const files = Array.prototype.slice.call(fileList || []);
    if (!files.length) { return; }
    files.forEach(function (file) {
      const item = { file: file, row: newRow(file) };
      item.row.uploadItem = item;
      queue.push(item);
    });
    announce(plural(files.length, "file") + " added to the uploads.");
    pump();
  }

  function removeAttachOption(fileId) {
    if (!attachSelect) { return; }
    const option = attachSelect.querySelector('option[value="' + CSS.escape(fileId) + '"]');
    if (option) { option.remove(); }
  }

  // --- Live status ------------------------------------------------------------------

  function watch(fileId, row) {
    if (row.dataset.status !== "queued" && row.dataset.status !== "processing") {
      polling.delete(fileId);
      return;
    }
    if (!polling.has(fileId)) { polling.set(fileId, { row: row, since: Date.now(), next: 0 }); }
    schedulePoll();
  }

  function schedulePoll() {
    if (pollTimer === null && polling.size) { pollTimer = window.setTimeout(pollAll, POLL_MS); }
  }

  async function pollOne(fileId, entry) {
    let access;
    try { access = await accessToken(false); } catch (error) { return error.login ? "stop" : "again"; }
    let response;
    try {
      response = await fetch(config.filesUrl + "/" + encodeURIComponent(fileId), {
        credentials: "omit",
        cache: "no-store",
        headers: { Authorization: "Bearer " + access, Accept: "application/json" },
      });
    } catch (error) {
      return "again";
    }
    if (response.status === 401) { accessToken.forget(); return "again"; }
    if (response.status === 429) {
      entry.next = Date.now() + (Number(response.headers.get("Retry-After")) || 10) * 1000;
      return "again";
    }
    if (response.status === 404) {
      hideProgress(entry.row);
      setStatus(entry.row, "gone");
      setDetail(entry.row, "This file was deleted.");
      entry.row.querySelectorAll("[data-file-action]").forEach(function (node) { node.hidden = true; });
      return "stop";
    }
    if (!response.ok) { return "again"; }
    let file;
    try {
      file = (await response.json()).data;
    } catch (error) {
      return "again";
    }
    const before = entry.row.dataset.status;
    renderFile(entry.row, file);
    if (file.status !== before) {
      if (file.status === "ready") { announce(file.name + " is ready: " + describeReady(file) + "."); }
      if (file.status === "failed") { announce(file.name + " failed: " + (file.failure_reason || "") ); }
    }
    return file.status === "ready" || file.status === "failed" ? "stop" : "again";
  }

  async function pollAll() {
    const now = Date.now();
    const due = [];
    polling.forEach(function (entry, fileId) {
      if (!entry.row.isConnected) { polling.delete(fileId); return; }
      if (entry.next > now) { return; }
      due.push([fileId, entry]);
    });
    try {
      await Promise.all(due.map(async function (pair) {
        const fileId = pair[0];
        const entry = pair[1];
        let outcome = "again";
        try {
          outcome = await pollOne(fileId, entry);
        } catch (error) {
          outcome = "again"; // one odd answer must not stop the others' updates
        }
        if (outcome === "stop") {
          polling.delete(fileId);
        } else if (Date.now() - entry.since > SLOW_AFTER_MS && entry.next <= Date.now()) {
          entry.next = Date.now() + SLOW_POLL_MS; // a long file: every few seconds is enough
        }
      }));
    } finally {
      pollTimer = null;
      schedulePoll();
    }
  }

  function carriesFiles(event) {
    return Boolean(event.dataTransfer) && Array.prototype.indexOf.call(event.dataTransfer.types, "Files") !== -1;
  }

  // --- Wiring ------------------------------------------------------------------------

  tbody.addEventListener("click", function (event) {
    const button = event.target.closest("[data-action]");
    if (!button) { return; }
    const row = button.closest("tr");
    if (button.dataset.action === "dismiss") {
      row.remove();
      syncEmpty();
      if (input) { input.focus(); }
    } else if (button.dataset.action === "retry" && row.uploadItem) {
      showButtons(row, []);
      setStatus(row, "waiting");
      setDetail(row, "Waiting to upload…");
      queue.push(row.uploadItem);
      pump();
    }
  });

  if (zone && input) {
    zone.hidden = false;
    input.addEventListener("change", function () {
      addFiles(input.files);
      input.value = ""; // choosing the same file again uploads it again
    });
    ["dragenter", "dragover"].forEach(function (name) {
      dropzone.addEventListener(name, function (event) {
        if (!carriesFiles(event)) { return; }
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
        dropzone.classList.add("dropzone-active");
      });
    });
    ["dragleave", "dragend"].forEach(function (name) {
      dropzone.addEventListener(name, function () { dropzone.classList.remove("dropzone-active"); });
    });
    dropzone.addEventListener("drop", function (event) {
      event.preventDefault();
      dropzone.classList.remove("dropzone-active");
      addFiles(event.dataTransfer && event.dataTransfer.files);
    });
    // A file dropped beside the drop zone must not replace the page (and its uploads).
    ["dragover", "drop"].forEach(function (name) {
      window.addEventListener(name, function (event) {
        if (carriesFiles(event)) { event.preventDefault(); }
      });
    });
    window.addEventListener("beforeunload", function (event) {
      if (uploading) { event.preventDefault(); event.returnValue = ""; }
    });
  }

  // Files the server rendered while they were still being read.
  Array.prototype.forEach.call(tbody.rows, function (row) {
    if (row.dataset.fileId) { watch(row.dataset.fileId, row); }
  });
})();
