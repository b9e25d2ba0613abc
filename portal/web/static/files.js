/* The file browser (/ui/files): containers, folders and objects through the object-store
 * API, from this page.  See portal/web/files.py and page_tokens.py for the design.
 *
 * - The API token comes from POST /ui/files/token (with the session's CSRF token) and lives
 *   in page_token.js's closure only: never in storage, a cookie or a URL.  API requests send
 *   it as X-Auth-Token and send no cookies (credentials: "omit").
 * - Downloads: fetch with the header, then a blob: URL typed application/octet-stream.
 * - Every name reaches the page through textContent, value or dataset, never as HTML.
 */
(function () {
  "use strict";

  const root = document.getElementById("files");
  if (!root) return;
  const cfg = root.dataset;
  const $ = (id) => document.getElementById(id);
  const state = { container: "", prefix: "", items: [], emails: new Map(), share: null };

  const Failure = SnfFailure;
  const getToken = snfPageToken(cfg.tokenUrl, cfg.csrf, "the object store");

  // --- the API --------------------------------------------------------------------------

  function containerUrl(container) {
    return cfg.storage + "/" + encodeURIComponent(container);
  }

  function objectUrl(container, name) {
    return containerUrl(container) + "/" + name.split("/").map(encodeURIComponent).join("/");
  }

  async function reason(status, statusText, text) {
    try {
      const fault = Object.values(JSON.parse(text))[0];
      if (fault && fault.message) return fault.message + " (" + status + ")";
    } catch (e) { /* not JSON */ }
    return "The object store answered " + status + " " + statusText;
  }

  /* One request with the token; on a 401 a fresh token and one more try. */
  async function api(method, url, headers, body) {
    for (let attempt = 0; ; attempt++) {
      const sent = Object.assign({ "X-Auth-Token": await getToken(attempt > 0) }, headers);
      const r = await fetch(url, { method, headers: sent, body, credentials: "omit",
                                   cache: "no-store" });
      if (r.status === 401 && attempt === 0) continue;
      if (!r.ok) throw new Failure(await reason(r.status, r.statusText, await r.text()));
      return r;
    }
  }

  /* Every entry of a JSON listing, page after page (an empty page is a 204). */
  async function listAll(url, params) {
    const out = [];
    let marker = "";
    for (;;) {
      const query = new URLSearchParams(Object.assign({ format: "json" }, params));
      if (marker) query.set("marker", marker);
      const r = await api("GET", url + "?" + query.toString());
      if (r.status === 204) return out;
      const page = await r.json();
      if (!page.length) return out;
      out.push(...page);
      const last = page[page.length - 1];
      marker = last.subdir || last.name;
    }
  }

  /* UUIDs to emails (the Astakos user catalog), remembered for the page's life. */
  async function resolveEmails(uuids) {
    const missing = [...new Set(uuids)].filter((u) => !state.emails.has(u));
    if (!missing.length) return;
    const r = await api("POST", cfg.catalog, { "Content-Type": "application/json" },
                        JSON.stringify({ uuids: missing }));
    const found = (await r.json()).uuid_catalog || {};
    for (const u of missing) state.emails.set(u, found[u] || u);
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

  function humanSize(n) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

  /* "read=u1,u2;write=u3" as {read: [...], write: [...]}. */
  function parseSharing(value) {
    const out = { read: [], write: [] };
    for (const part of (value || "").split(";")) {
      const at = part.indexOf("=");
      const key = part.slice(0, at).trim().toLowerCase();
      if (at > 0 && key in out) out[key] = part.slice(at + 1).split(",").filter(Boolean);
    }
    return out;
  }

  function memberUuids(members) {
    return members.map((m) => m.split(":")[0]).filter((u) => UUID.test(u));
  }

  function showMember(member) {
    const at = member.lastIndexOf(":");
    if (at > 0) return showMember(member.slice(0, at)) + ":" + member.slice(at + 1);
    return state.emails.get(member) || member;
  }

  function sharingText(item) {
    const perms = parseSharing(item.x_object_sharing);
    const parts = [];
    if (perms.read.length) parts.push("read: " + perms.read.map(showMember).join(", "));
    if (perms.write.length) parts.push("write: " + perms.write.map(showMember).join(", "));
    if (item.x_object_public) parts.push("public");
    return parts.join("; ");
  }

  function showPath() {
    const path = $("path");
    path.replaceChildren();
    if (!state.container) return;
    const crumb = (label, prefix) => {
      const b = el("button", label);
      b.type = "button";
      b.dataset.prefix = prefix;
      b.addEventListener("click", guarded(() => openFolder(prefix)));
      path.append(b);
    };
    crumb(state.container, "");
    let prefix = "";
    for (const part of state.prefix.split("/").slice(0, -1)) {
      prefix += part + "/";
      path.append(el("span", "/", "sep"));
      crumb(part, prefix);
    }
  }

  function showObjects() {
    const rows = $("object-rows");
    rows.replaceChildren();
    if (!state.container) {
      const tr = el("tr");
      const td = el("td", "Create a container to start.", "muted");
      td.colSpan = 5;
      tr.append(td);
      rows.append(tr);
      return;
    }
    for (const item of state.items) if (item.subdir) rows.append(folderRow(item));
    for (const item of state.items) if (!item.subdir) rows.append(objectRow(item));
    if (!state.items.length) {
      const tr = el("tr");
      const td = el("td", "This folder is empty.", "muted");
      td.colSpan = 5;
      tr.append(td);
      rows.append(tr);
    }
  }

  function folderRow(item) {
    const tr = el("tr");
    tr.dataset.folder = item.subdir;
    const b = el("button", item.subdir.slice(state.prefix.length), "folder");
    b.type = "button";
    b.addEventListener("click", guarded(() => openFolder(item.subdir)));
    const name = el("td", undefined, "name");
    name.append(b);
    tr.append(name, el("td", "folder", "muted"), el("td"), el("td"), el("td"));
    return tr;
  }

  function objectRow(item) {
    const tr = el("tr");
    tr.dataset.name = item.name;
    const size = el("td", humanSize(item.bytes), "size");
    size.title = item.bytes + " bytes";
    const modified = (item.last_modified || "").slice(0, 16).replace("T", " ");
    const actions = el("td", undefined, "actions");
    for (const [label, handler] of [["Download", download], ["Share", openShare],
                                    ["Delete", remove]]) {
      const b = el("button", label, label.toLowerCase());
      b.type = "button";
      b.addEventListener("click", guarded(() => handler(item)));
      actions.append(b, " ");
    }
    tr.append(el("td", item.name.slice(state.prefix.length), "name"), size,
              el("td", modified, "modified"), el("td", sharingText(item), "sharing"), actions);
    return tr;
  }

  // --- actions --------------------------------------------------------------------------

  async function loadContainers(select) {
    const found = await listAll(cfg.storage, {});
    const box = $("container");
    box.replaceChildren();
    for (const c of found) {
      const option = el("option", c.name);
      option.value = c.name;
      box.append(option);
    }
    if (!found.length) {
      const none = el("option", "no containers yet");
      none.value = "";
      box.append(none);
    }
    const names = found.map((c) => c.name);
    const chosen = names.includes(select) ? select : names[0] || "";
    box.value = chosen;
    state.container = chosen;
    state.prefix = "";
    await loadObjects();
  }

  async function loadObjects() {
    showPath();
    state.items = [];
    if (state.container) {
      state.items = await listAll(containerUrl(state.container),
                                  { delimiter: "/", prefix: state.prefix });
      const uuids = [];
      for (const item of state.items) {
        const perms = parseSharing(item.x_object_sharing);
        uuids.push(...memberUuids(perms.read), ...memberUuids(perms.write));
      }
      await resolveEmails(uuids);
    }
    showObjects();
  }

  async function openFolder(prefix) {
    state.prefix = prefix;
    closeShare();
    status("");
    await loadObjects();
  }

  async function createContainer() {
    const name = $("container-name").value.trim();
    if (!name || name.includes("/") || name === "." || name === "..") {
      throw new Failure("A container name must not be empty, hold '/', or be '.' or '..'.");
    }
    await api("PUT", containerUrl(name));
    $("container-name").value = "";
    closeShare();
    await loadContainers(name);
    status("Container " + name + " is ready.");
  }

  async function newFolder() {
    const name = $("folder-name").value.replace(/^\/+|\/+$/g, "");
    if (!name || name.split("/").some((p) => p === "." || p === ".." || p === "")) {
      throw new Failure("A folder name must not be empty or hold '.', '..' or '//'.");
    }
    $("folder-name").value = "";
    await openFolder(state.prefix + name + "/");
    status("Folder " + name + " exists once a file is uploaded into it.");
  }

  function putFile(url, file, tokenValue, progress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.setRequestHeader("X-Auth-Token", tokenValue);
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) progress(e.loaded, e.total);
      });
      xhr.addEventListener("load", () => resolve(xhr));
      xhr.addEventListener("error", () => reject(new Failure("The upload of " + file.name +
                                                             " failed: network error.")));
      xhr.send(file);
    });
  }

  async function upload() {
    if (!state.container) throw new Failure("Create or pick a container first.");
    const files = [...$("upload-file").files];
    const bar = $("upload-progress");
    const note = $("upload-status");
    $("upload").disabled = true;
    bar.hidden = false;
    try {
      for (const [i, file] of files.entries()) {
        const name = state.prefix + file.name;
        const url = objectUrl(state.container, name);
        note.textContent = file.name + (files.length > 1 ? " (" + (i + 1) + "/" + files.length + ")" : "");
        bar.value = 0;
        for (let attempt = 0; ; attempt++) {
          const xhr = await putFile(url, file, await getToken(attempt > 0), (done, total) => {
            bar.value = total ? done / total : 1;
          });
          if (xhr.status === 401 && attempt === 0) continue;
          if (xhr.status < 200 || xhr.status >= 300) {
            throw new Failure(file.name + ": " +
                              await reason(xhr.status, xhr.statusText, xhr.responseText));
          }
          break;
        }
        bar.value = 1;
      }
      $("upload-file").value = "";
      status("Uploaded " + files.map((f) => f.name).join(", ") + ".");
    } finally {
      $("upload").disabled = false;
      bar.hidden = true;
      note.textContent = "";
      await loadObjects();
    }
  }

  async function download(item) {
    const r = await api("GET", objectUrl(state.container, item.name));
    const bytes = await r.blob();
    // Typed as bytes: an HTML object is saved, never rendered in this origin.
    const url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = item.name.split("/").pop() || "download";
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function remove(item) {
    if (!window.confirm("Delete " + item.name + "?")) return;
    await api("DELETE", objectUrl(state.container, item.name));
    if (state.share && state.share.name === item.name) closeShare();
    status("Deleted " + item.name + ".");
    await loadObjects();
  }

  async function openShare(item) {
    state.share = item;
    const perms = parseSharing(item.x_object_sharing);
    $("share-name").textContent = item.name;
    $("share-read").value = perms.read.map(showMember).join(", ");
    $("share-write").value = perms.write.map(showMember).join(", ");
    $("share-public").checked = Boolean(item.x_object_public);
    const link = $("public-url");
    link.textContent = item.x_object_public || "";
    link.href = item.x_object_public || "#";
    $("public-url-row").hidden = !item.x_object_public;
    $("share-panel").hidden = false;
  }

  function closeShare() {
    state.share = null;
    $("share-panel").hidden = true;
  }

  function members(box) {
    return box.value.split(",").map((m) => m.trim()).filter(Boolean);
  }

  async function saveShare() {
    const item = state.share;
    if (!item) return;
    const parts = [];
    const read = members($("share-read"));
    const write = members($("share-write"));
    if (read.length) parts.push("read=" + read.join(","));
    if (write.length) parts.push("write=" + write.join(","));
    let headers;
    try {
      headers = new Headers({ "X-Object-Sharing": parts.join(";"),
                              "X-Object-Public": $("share-public").checked ? "true" : "false" });
    } catch (e) {
      throw new Failure("Give users by email address (ASCII) or UUID.");
    }
    await api("POST", objectUrl(state.container, item.name), Object.fromEntries(headers));
    await loadObjects();
    const fresh = state.items.find((i) => i.name === item.name);
    if (fresh) await openShare(fresh);
    status("Saved the sharing of " + item.name + ".");
  }

  // --- wiring ---------------------------------------------------------------------------

  $("container").addEventListener("change", guarded(async () => {
    state.container = $("container").value;
    await openFolder("");
  }));
  $("new-container").addEventListener("submit", guarded(createContainer));
  $("new-folder").addEventListener("submit", guarded(newFolder));
  $("upload-form").addEventListener("submit", guarded(upload));
  $("share-form").addEventListener("submit", guarded(saveShare));
  $("share-close").addEventListener("click", closeShare);
  loadContainers("").catch(fail);
})();
