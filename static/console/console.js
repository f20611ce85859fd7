// Small progressive enhancements used on several console pages. Every page works
// without this file; it only adds copy buttons and conveniences.
(function () {
  "use strict";

  // A polite live region announces "Copied" to screen readers.
  function announce(text) {
    let region = document.getElementById("console-announcer");
    if (!region) {
      region = document.createElement("div");
      region.id = "console-announcer";
      region.className = "visually-hidden";
      region.setAttribute("aria-live", "polite");
      document.body.appendChild(region);
    }
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  function textOf(target) {
    return "value" in target && target.tagName !== "PRE" ? target.value : target.textContent;
  }

  // navigator.clipboard needs a secure context (https or localhost); elsewhere the
  // text is selected and copied with the older command.
  function copyText(text, target) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "visually-hidden";
      document.body.appendChild(area);
      area.select();
      const ok = document.execCommand("copy");
      area.remove();
      if (target && typeof target.select === "function") { target.select(); }
      ok ? resolve() : reject(new Error("copy failed"));
    });
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) { return; }
    const target = document.querySelector(button.getAttribute("data-copy"));
    if (!target) { return; }
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    copyText(textOf(target), target).then(function () {
      button.textContent = "Copied";
      announce("Copied to the clipboard");
    }, function () {
      button.textContent = "Press Ctrl+C";
      announce("Selected; press Control C to copy");
    });
    window.setTimeout(function () { button.textContent = label; }, 2000);
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.matches("[data-select-on-focus]")) { event.target.select(); }
  });

  // A select that submits its form when changed; the form's button is for no-JS.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    const form = select.form;
    form.querySelectorAll("[data-js-hide]").forEach(function (el) { el.hidden = true; });
    select.addEventListener("change", function () { form.requestSubmit(); });
  });
})();
