/* The API token of a page whose script calls an API (the file browser, the servers page).
 * See portal/web/page_tokens.py for the design: the token comes from POST <tokenUrl> with the
 * session's CSRF token and lives in this closure only, never in storage, a cookie or a URL.
 *
 * snfPageToken(tokenUrl, csrf, api) returns getToken(fresh): a promise of the token, asked
 * for again when 90% of its life has passed, on demand (fresh = true, after a 401), and
 * shared by concurrent callers.  SnfFailure is the error the pages show; `login` says the
 * session has ended.
 */
"use strict";

class SnfFailure extends Error {
  constructor(message, login) { super(message); this.login = Boolean(login); }
}

function snfPageToken(tokenUrl, csrf, api) {
  let token = null;         // {value, renewAt}
  let pending = null;       // the request under way

  async function request() {
    token = null;
    const r = await fetch(tokenUrl, {
      method: "POST", credentials: "same-origin", cache: "no-store", redirect: "error",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" },
    });
    // 401: logged out elsewhere; 400: the session (and its CSRF token) is gone.
    if (r.status === 401 || r.status === 400) {
      throw new SnfFailure("Your session has ended: log in again.", true);
    }
    if (!r.ok) throw new SnfFailure("No token for " + api + " (" + r.status + "): reload the page.");
    const body = await r.json();
    token = { value: body.token, renewAt: Date.now() + body.expires_in * 900 };  // at 90%
    return token.value;
  }

  return function getToken(fresh) {
    if (!fresh && token && Date.now() < token.renewAt) return Promise.resolve(token.value);
    if (!pending) pending = request().finally(() => { pending = null; });
    return pending;
  };
}
