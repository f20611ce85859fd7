/* Helpers the console's page scripts share (playground.js, files.js).
 *
 * Loaded before them with `defer`; everything lives on window.ComboConsole.
 * DOM text is only ever set with textContent, never innerHTML.
 */
(function () {
  "use strict";

  class ConsoleError extends Error {
    constructor(message, extra) {
      super(message);
      Object.assign(this, extra || {});
    }
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  // The short-lived JWT the console issues to the signed-in session
  // (/console/token), kept in memory and renewed 30 s before it expires.
  // accessToken.forget() drops it (after a 401), so the next call fetches anew.
  function tokenSource(url) {
    let token = null; // {access, expiresAt}
    async function accessToken(force) {
      if (!force && token && token.expiresAt - Date.now() > 30000) { return token.access; }
      let response;
      try {
        response = await fetch(url, {
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "application/json" },
        });
      } catch (error) {
        throw new ConsoleError("The server could not be reached.", { retry: true });
      }
      if (response.status === 401) {
        throw new ConsoleError("Your console session has ended.", { login: true });
      }
      if (!response.ok) {
        throw new ConsoleError("This page could not get a token (HTTP " + response.status + ").", { retry: true });
      }
      const body = await response.json();
      token = { access: body.access, expiresAt: Date.now() + body.expires_in * 1000 };
      return token.access;
    }
    accessToken.forget = function () { token = null; };
    return accessToken;
  }

  window.ComboConsole = { ConsoleError: ConsoleError, el: el, tokenSource: tokenSource };
})();
