/* The servers page (/ui/servers): the user's servers through the compute API, from this
 * page.  See portal/web/servers.py and servers_token.py for the design.
 *
 * - The API token comes from POST /ui/servers/token (with the session's CSRF token) and
 *   lives in the `token` variable only: never in storage, a cookie or a URL.  API requests
 *   send it as X-Auth-Token and send no cookies (credentials: "omit").
 * - The list is polled every data-poll-ms milliseconds and updated row by row in place (a
 *   button does not move or vanish under the pointer between two polls).
 * - A new server's password is shown once, in the password panel, and kept nowhere else.
 * - Every name reaches the page through textContent, value or dataset, never as HTML.
 */
(function () {
  "use strict";

  const root = document.getElementById("servers");
  if (!root) return;
  const cfg = root.dataset;
  const $ = (id) => document.getElementById(id);
  const POLL_MS = Math.max(1000, Number(cfg.pollMs) || 3000);
  const state = {
    flavors: new Map(), images: new Map(), rows: new Map(), deleting: new Map(),
    timer: null, polling: false, ended: false, pollError: "",
  };

  const Failure = SnfFailure;
  const getToken = snfPageToken(cfg.tokenUrl, cfg.csrf, "the compute API");

  // --- the API --------------------------------------------------------------------------

  /* The message of an OpenStack error body ({"conflict": {"code": 409, "message": ...}}). */
  function reason(status, statusText, text) {
    try {
      const fault = Object.values(JSON.parse(text))[0];
      if (fault && fault.message) return fault.message + " (" + status + ")";
    } catch (e) { /* not JSON */ }
    return "The compute API answered " + status + " " + statusText;
  }

  /* One request with the token; on a 401 a fresh token and one more try.  JSON back. */
  async function api(method, path, body) {
    const headers = { "Accept": "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    for (let attempt = 0; ; attempt++) {
      headers["X-Auth-Token"] = await getToken(attempt > 0);
      let r;
      try {
        r = await fetch(cfg.compute + path, {
          method, headers, credentials: "omit", cache: "no-store",
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      } catch (e) {
        throw new Failure("The portal cannot be reached: check your connection.");
      }
      if (r.status === 401 && attempt === 0) continue;
      const text = await r.text();
      if (!r.ok) throw new Failure(reason(r.status, r.statusText, text));
      return text ? JSON.parse(text) : null;
    }
  }

  // --- showing --------------------------------------------------------------------------

  function status(message, isError) {
    const box = $("status");
    box.replaceChildren(document.createTextNode(message));
    box.className = isError ? "flash error" : "flash";
    box.hidden = !message;
  }

  function fail(err) {
    status(err instanceof Failure ? err.message : "Something went wrong: " + err, true);
    if (err instanceof Failure && err.login) {
      state.ended = true;
      stopPolling();
      const a = el("a", " Log in");
      a.href = cfg.loginUrl;
      $("status").append(a);
    }
  }

  function guarded(fn) {
    return (event) => {
      if (event) event.preventDefault();
      return fn(event).catch(fail);
    };
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined) node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  function option(value, text) {
    const o = el("option", text);
    o.value = value;
    return o;
  }

  function mib(n) {
    return n >= 1024 && n % 1024 === 0 ? n / 1024 + " GiB" : n + " MiB";
  }

  function flavorText(f) {
    return f.name + " (" + f.vcpus + " CPU, " + mib(f.ram) + " RAM, " + f.disk + " GiB disk)";
  }

  /* What a server's state allows: every action waits until the one in flight ends. */
  function allowed(server) {
    const idle = !server["SNF:task_state"];
    const s = server.status;
    return {
      start: idle && s === "STOPPED",
      stop: idle && s === "ACTIVE",
      reboot: idle && s === "ACTIVE",
      snapshot: idle && (s === "ACTIVE" || s === "STOPPED"),
      delete: idle && s !== "DELETED",
    };
  }

  const ACTIONS = [
    ["start", "Start", { "os-start": null }],
    ["stop", "Stop", { "os-stop": null }],
    ["reboot", "Reboot", { "reboot": { "type": "SOFT" } }],
    ["snapshot", "Snapshot", null],
    ["delete", "Delete", null],
  ];

  function newRow(server) {
    const tr = el("tr");
    tr.dataset.id = String(server.id);
    const statusCell = el("td", undefined, "state");
    statusCell.append(el("span", "", "status"), " ", el("span", "", "task"), el("div", "", "fault"));
    const actions = el("td", undefined, "actions");
    for (const [name, label, body] of ACTIONS) {
      const b = el("button", label, name);
      b.type = "button";
      b.addEventListener("click", guarded(() => act(tr, name, body)));
      actions.append(b, " ");
    }
    tr.append(el("td", "", "name"), statusCell, el("td", "", "flavor"), el("td", "", "image"),
              el("td", "", "created"), actions);
    return tr;
  }

  function setText(tr, selector, text) {
    const node = tr.querySelector(selector);
    if (node.textContent !== text) node.textContent = text;
  }

  function showRow(tr, server) {
    tr.server = server;
    tr.dataset.status = server.status;
    setText(tr, ".name", server.name);
    const shown = tr.querySelector(".status");
    setText(tr, ".status", server.status);
    shown.className = "status " + server.status;
    const task = server["SNF:task_state"];
    setText(tr, ".task", task ? "(" + task.toLowerCase() + ")" : "");
    // why a server is in ERROR (or why its last action failed): the message, details on hover
    const fault = server.status === "ERROR" && server.fault ? server.fault : null;
    setText(tr, ".fault", fault ? fault.message || "" : "");
    tr.querySelector(".fault").title = fault ? fault.details || "" : "";
    const flavor = state.flavors.get(String(server.flavor && server.flavor.id));
    setText(tr, ".flavor", flavor ? flavor.name : String(server.flavor && server.flavor.id));
    const image = state.images.get(String(server.image && server.image.id));
    setText(tr, ".image", image ? image.name : String(server.image && server.image.id));
    setText(tr, ".created", (server.created || "").slice(0, 16).replace("T", " "));
    const can = allowed(server);
    for (const [name] of ACTIONS) {
      const b = tr.querySelector("button." + name);
      if (!b.dataset.busy) b.disabled = !can[name];
    }
  }

  function showServers(servers) {
    const rows = $("server-rows");
    const seen = new Set();
    for (const server of servers) {
      const id = String(server.id);
      seen.add(id);
      let tr = state.rows.get(id);
      if (!tr) {
        tr = newRow(server);
        state.rows.set(id, tr);
      }
      showRow(tr, server);
      rows.append(tr);  // in the API's order (by id); moving a row keeps its buttons
    }
    for (const [id, tr] of state.rows) {
      if (seen.has(id)) continue;
      tr.remove();
      state.rows.delete(id);
      if (state.deleting.has(id)) {
        status("Server " + state.deleting.get(id) + " is deleted.");
        state.deleting.delete(id);
      }
    }
    for (const node of [...rows.children]) if (!node.dataset.id) node.remove();
    if (!servers.length) {
      const tr = el("tr");
      const td = el("td", "No servers yet: create one above.", "muted");
      td.colSpan = 6;
      tr.append(td);
      rows.append(tr);
    }
  }

  // --- loading --------------------------------------------------------------------------

  async function loadChoices() {
    const [flavors, images] = await Promise.all([api("GET", "/flavors/detail"),
                                                 api("GET", "/images/detail")]);
    const flavorBox = $("server-flavor");
    flavorBox.replaceChildren();
    for (const f of flavors.flavors) {
      state.flavors.set(String(f.id), f);
      if (f["SNF:allow_create"] === false) continue;
      flavorBox.append(option(String(f.id), flavorText(f)));
    }
    const imageBox = $("server-image");
    imageBox.replaceChildren();
    for (const i of images.images) {
      state.images.set(String(i.id), i);
      if (i.status !== "ACTIVE") continue;
      imageBox.append(option(String(i.id), i.name + (i.is_public ? " (public)" : "")));
    }
    if (!flavorBox.options.length) flavorBox.append(option("", "no flavors: ask an administrator"));
    if (!imageBox.options.length) imageBox.append(option("", "no images: register one first"));
    $("create-server").disabled = !flavorBox.value || !imageBox.value;
  }

  let asked = 0;  // refreshes started
  let shown = 0;  // the latest one shown: an older answer arriving late is dropped

  async function refresh() {
    const mine = ++asked;
    const body = await api("GET", "/servers/detail");
    if (mine < shown) return;
    shown = mine;
    showServers(body.servers);
  }

  /* One poll, then the next one POLL_MS later; none while the tab is hidden. */
  async function poll() {
    state.timer = null;
    if (state.polling) return;
    state.polling = true;
    try {
      if (!document.hidden) {
        await refresh();
        // a failed poll's message goes with the next good one (not an action's message)
        if (state.pollError && $("status").textContent === state.pollError) status("");
        state.pollError = "";
      }
    } catch (err) {
      fail(err);
      state.pollError = $("status").textContent;
    } finally {
      state.polling = false;
    }
    schedule();
  }

  function schedule() {
    if (state.timer === null && !state.ended) state.timer = setTimeout(poll, POLL_MS);
  }

  function stopPolling() {
    if (state.timer !== null) clearTimeout(state.timer);
    state.timer = null;
  }

  // --- actions --------------------------------------------------------------------------

  async function create() {
    const name = $("server-name").value.trim();
    if (!name) throw new Failure("Give the server a name.");
    const imageRef = $("server-image").value;
    const flavorRef = $("server-flavor").value;
    if (!imageRef || !flavorRef) throw new Failure("Pick an image and a flavor first.");
    const button = $("create-server");
    button.disabled = true;
    try {
      const body = await api("POST", "/servers", { server: { name, imageRef, flavorRef } });
      const server = body.server;
      $("server-name").value = "";
      showPassword(server.name, server.adminPass);
      status("Server " + server.name + " is being built.");
      await refresh();
    } finally {
      button.disabled = false;
    }
  }

  function showPassword(name, password) {
    $("password-server").textContent = name;
    $("server-password").textContent = password || "";
    $("password-panel").hidden = false;
  }

  function hidePassword() {
    $("server-password").textContent = "";
    $("password-server").textContent = "";
    $("password-panel").hidden = true;
  }

  async function act(tr, name, body) {
    const server = tr.server;
    const id = String(server.id);
    if (name === "delete" && !window.confirm("Delete server " + server.name + "?")) return;
    let label = "";
    if (name === "snapshot") {
      label = window.prompt("Save the disk of " + server.name + " as an image named:",
                            server.name + " snapshot") || "";
      if (!label.trim()) return;
      body = { "createImage": { "name": label.trim() } };
    }
    const button = tr.querySelector("button." + name);
    button.dataset.busy = "1";
    button.disabled = true;
    try {
      if (name === "delete") {
        await api("DELETE", "/servers/" + encodeURIComponent(id));
        state.deleting.set(id, server.name);
        status("Deleting server " + server.name + ".");
      } else if (name === "snapshot") {
        status("Saving a snapshot of server " + server.name + "…");
        await api("POST", "/servers/" + encodeURIComponent(id) + "/action", body);
        await loadChoices();
        status("Saved a snapshot of server " + server.name + " as image " + label.trim() +
               ": new servers can start from it.");
      } else {
        await api("POST", "/servers/" + encodeURIComponent(id) + "/action", body);
        status({ start: "Starting", stop: "Stopping", reboot: "Rebooting" }[name] +
               " server " + server.name + ".");
      }
    } finally {
      delete button.dataset.busy;
      await refresh().catch(fail);
    }
  }

  // --- wiring ---------------------------------------------------------------------------

  $("create-form").addEventListener("submit", guarded(create));
  $("password-done").addEventListener("click", hidePassword);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.timer !== null) { stopPolling(); poll(); }
  });
  loadChoices().then(refresh).catch(fail).finally(schedule);
})();
