// The agent playground: asks the public completions endpoint with stream: true and
// renders the answer as it arrives.
//
// Credential: a short-lived JWT from GET /console/token (issued to the signed-in
// session), kept in this closure only: never an API key, never localStorage.
// Rendering: every server string goes in through textContent, never innerHTML.
(function () {
  "use strict";

  const root = document.getElementById("playground");
  if (!root) { return; }

  const log = document.getElementById("chat-log");
  const form = document.getElementById("composer");
  const input = document.getElementById("question");
  const sendButton = document.getElementById("send");
  const stopButton = document.getElementById("stop");
  const sessionLabel = document.getElementById("session-id");
  const newConversation = document.getElementById("new-conversation");
  const agentName = root.dataset.agentName;
  // The server-rendered start of the log (opening message or hint), for "New conversation".
  const openingNodes = Array.from(log.children, function (node) { return node.cloneNode(true); });

  let sessionId = null;
  let controller = null;

  const ConsoleError = window.ComboConsole.ConsoleError;

  // --- DOM helpers (textContent only) ---------------------------------------

  const el = window.ComboConsole.el;

  function scrollToEnd() {
    log.scrollTop = log.scrollHeight;
  }

  function addMessage(role, label, text) {
    const empty = log.querySelector("[data-empty]");
    if (empty) { empty.remove(); }
    const item = el("li", "msg msg-" + role);
    item.appendChild(el("div", "msg-role", label));
    const body = el("div", "msg-text", text);
    item.appendChild(body);
    log.appendChild(item);
    scrollToEnd();
    return { item: item, body: body };
  }

  function describePosition(position) {
    if (!position || typeof position !== "object") { return ""; }
    return Object.keys(position).map(function (key) {
      return key === "heading" ? String(position[key]) : key + " " + position[key];
    }).join(", ");
  }

  // A score to three significant digits: bm25 over one small file gives a few
  // millionths (0.0000021), which two decimals would show as 0.00.
  function formatScore(score) {
    return String(Number(score.toPrecision(3)));
  }

  // Scores compare only within one answer (API.md): a bar relative to its best passage.
  function relevanceBar(score, best) {
    if (!(best > 0)) { return null; }
    const share = Math.min(1, Math.max(0, score / best));
    const percent = Math.round(share * 100);
    const label = share === 1
      ? "Relevance: the best passage in this answer"
      : "Relevance: " + percent + "% of the best passage in this answer";
    const bar = el("meter", "ref-score", percent + "%");
    bar.min = 0;
    bar.max = 1;
    bar.value = share;
    bar.setAttribute("aria-label", label);
    bar.title = label;
    return bar;
  }

  function renderReferences(item, references) {
    let box = item.querySelector(".msg-refs");
    if (box) { box.remove(); }
    if (!Array.isArray(references) || references.length === 0) { return; }
    box = el("div", "msg-refs");
    box.appendChild(el("p", "msg-refs-title", "Sources"));
    const list = el("ol");
    const scores = references.map(function (ref) { return ref.score; }).filter(function (score) {
      return typeof score === "number" && isFinite(score);
    });
    const best = scores.length ? Math.max.apply(null, scores) : 0;
    references.forEach(function (ref) {
      const entry = el("li");
      const details = el("details");
      const summary = el("summary");
      summary.appendChild(el("span", "ref-file", ref.file_name || "passage"));
      const scored = typeof ref.score === "number" && isFinite(ref.score);
      const meta = [describePosition(ref.position)];
      if (scored) { meta.push("score " + formatScore(ref.score)); }
      const metaText = meta.filter(Boolean).join(" · ");
      if (metaText) { summary.appendChild(el("span", "ref-meta", " · " + metaText)); }
      const bar = scored ? relevanceBar(ref.score, best) : null;
      if (bar) { summary.appendChild(bar); }
      details.appendChild(summary);
      details.appendChild(el("p", "ref-content", ref.content || ""));
      entry.appendChild(details);
      list.appendChild(entry);
    });
    box.appendChild(list);
    item.appendChild(box);
  }

  function showError(item, message, detail, loginUrl) {
    const box = el("div", "msg-error");
    box.setAttribute("role", "alert");
    box.appendChild(document.createTextNode(message));
    if (detail) { box.appendChild(el("span", "ref-meta", " (" + detail + ")")); }
    if (loginUrl) {
      box.appendChild(document.createTextNode(" "));
      const link = el("a", null, "Sign in again");
      link.href = loginUrl;
      box.appendChild(link);
    }
    item.appendChild(box);
  }

  function setSession(id) {
    sessionId = id;
    sessionLabel.textContent = id || "new on first question";
  }

  // --- The credential ---------------------------------------------------------

  const accessToken = window.ComboConsole.tokenSource(root.dataset.tokenUrl);

  function ask(access, question, signal) {
    const payload = { question: question, stream: true };
    if (sessionId) { payload.session_id = sessionId; }
    return fetch(root.dataset.completionsUrl, {
      method: "POST",
      credentials: "omit", // the bearer token is the credential, not the cookie
      headers: {
        Authorization: "Bearer " + access,
        "Content-Type": "application/json",
        Accept: "text/event-stream",
      },
      body: JSON.stringify(payload),
      signal: signal,
    });
  }

  async function envelopeOf(response) {
    try {
      return await response.json();
    } catch (e) {
      return { code: null, message: "HTTP " + response.status, data: {} };
    }
  }

  // --- Server-Sent Events -------------------------------------------------------

  // Feeds decoded text; calls onEvent(name, data) for each complete event.
  // Comment lines (": keep-alive") are skipped. Lines end in \n or \r\n.
  function sseParser(onEvent) {
    let buffer = "";
    let eventName = "message";
    let data = [];
    return function feed(text, end) {
      buffer += text;
      const lines = buffer.split("\n");
      buffer = end ? "" : lines.pop();
      lines.forEach(function (raw) {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        if (line === "") {
          if (data.length) { onEvent(eventName, data.join("\n")); }
          eventName = "message";
          data = [];
          return;
        }
        if (line.startsWith(":")) { return; }
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) { value = value.slice(1); }
        if (field === "event") { eventName = value; }
        else if (field === "data") { data.push(value); }
      });
    };
  }

  async function readStream(response, answer) {
    let chunks = 0;
    let failed = false;
    const feed = sseParser(function (name, raw) {
      let data;
      try { data = JSON.parse(raw); } catch (e) { return; }
      if (name === "message") {
        if (data.answer) {
          answer.body.appendChild(document.createTextNode(data.answer));
          chunks += 1;
          answer.item.dataset.chunks = String(chunks);
          scrollToEnd();
        }
        if (data.reference && data.reference.length) { renderReferences(answer.item, data.reference); }
      } else if (name === "error") {
        failed = true;
        const requestId = data.data && data.data.request_id;
        showError(answer.item, data.message || "The answer failed.",
          "code " + data.code + (requestId ? ", request " + requestId : ""));
      } else if (name === "done") {
        if (data.session_id) { setSession(data.session_id); }
        if (data.message_id) { answer.item.dataset.messageId = data.message_id; }
      }
    });
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const result = await reader.read();
      if (result.done) {
        feed(decoder.decode(), true);
        break;
      }
      feed(decoder.decode(result.value, { stream: true }), false);
    }
    return failed ? "error" : "done";
  }

  // --- One question -------------------------------------------------------------

  function busy(on) {
    sendButton.disabled = on;
    stopButton.hidden = !on;
    input.readOnly = on;
  }

  async function submit(question) {
    addMessage("user", "You", question);
    const answer = addMessage("assistant", agentName, "");
    answer.item.dataset.state = "streaming";
    answer.item.setAttribute("aria-busy", "true");
    controller = new AbortController();
    busy(true);
    let state = "error";
    try {
      let response = await ask(await accessToken(false), question, controller.signal);
      if (response.status === 401) {
        // The token expired between issue and use: get a fresh one, once.
        response = await ask(await accessToken(true), question, controller.signal);
      }
      if (!response.ok) {
        const envelope = await envelopeOf(response);
        const requestId = envelope.data && envelope.data.request_id;
        showError(answer.item, envelope.message || "The request failed.",
          "HTTP " + response.status + (envelope.code ? ", code " + envelope.code : "") +
          (requestId ? ", request " + requestId : ""));
      } else {
        state = await readStream(response, answer);
      }
    } catch (error) {
      if (error.name === "AbortError") {
        state = "stopped";
        answer.item.appendChild(el("p", "msg-note",
          "Stopped. The agent still finishes this answer and saves it to the session."));
      } else if (error instanceof ConsoleError) {
        showError(answer.item, error.message, null, error.login ? root.dataset.loginUrl : null);
      } else {
        showError(answer.item, "The connection to the server was lost.", error.message);
      }
    } finally {
      answer.item.dataset.state = state;
      answer.item.setAttribute("aria-busy", "false");
      controller = null;
      busy(false);
      input.focus();
    }
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || controller) { return; }
    input.value = "";
    submit(question);
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  stopButton.addEventListener("click", function () {
    if (controller) { controller.abort(); }
  });

  newConversation.addEventListener("click", function () {
    if (controller) { controller.abort(); }
    log.replaceChildren.apply(log, openingNodes.map(function (node) { return node.cloneNode(true); }));
    setSession(null);
    input.focus();
  });

  // Send is disabled in the page as served: a click before this script ran would
  // submit the form to the page itself, question and all, and lose it.
  busy(false);
})();
