// The search page: plain DOM and fetch against /v1, no build step and nothing fetched from elsewhere.
"use strict";

const $ = (selector) => document.querySelector(selector);
const PAGE_SIZE = 20;        // identities per page of the gallery list
const ITEMS_PAGE = 60;       // thumbnails per page of an identity view
const SIMILARITY_HELP =
  "similarity = cosine of the two unit-length embeddings = 1 − d²/2, d being the L2 distance; " +
  "shown as a percentage (0% at or below zero)";

const KEY_STORE = "siamese-api-key";  // this tab only (sessionStorage): a reload keeps the key

const view = { file: null, text: null, search: 0, objectUrl: null, threshold: null, needsKey: false,
               readsNeedKey: false, filter: "", offset: 0, identity: null, identityOffset: 0 };

function errorText(body, status) {
  return body && body.error ? `${body.error.message} (${status})` : `request failed (${status})`;
}

async function call(url, options = {}) {
  // The key goes with every call: writes need it, reads too when the service protects them.
  const response = await fetch(url, { ...options, headers: { ...keyHeaders(), ...(options.headers || {}) } });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(errorText(body, response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}

function explain(error) {
  // A request refused for its key: say where the key goes.
  return error.status === 401 ? `${error.message}. Enter the API key at the top of the page.` : error.message;
}

function showKeyField(forReads) {
  $("#key-field").hidden = false;
  $("#key-label").textContent = forReads
    ? "API key, needed to search and browse this gallery"
    : "API key, for adding and removing";
}

function showImage(img, url) {
  // An <img> cannot send the key: when reads need it, fetch the picture and show a blob: URL.
  if (!view.readsNeedKey) {
    img.src = url;
    return;
  }
  fetch(url, { headers: keyHeaders() })
    .then((response) => (response.ok ? response.blob() : Promise.reject(new Error(String(response.status)))))
    .then((blob) => {
      const objectUrl = URL.createObjectURL(blob);
      img.addEventListener("load", () => URL.revokeObjectURL(objectUrl), { once: true });
      img.src = objectUrl;
    })
    .catch(() => img.setAttribute("alt", `${img.alt || "image"} (not available)`));
}

function thumbnail(url, alt) {
  const img = el("img", { alt, loading: "lazy" });
  showImage(img, `${url}?size=160`);
  return img;
}

function keyHeaders() {
  const key = $("#api-key").value;
  return key ? { "X-API-Key": key } : {};
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function say(selector, text) {
  const node = $(selector);
  node.textContent = text || "";
  node.hidden = !text;
}

function images(count) {
  return `${count} image${count === 1 ? "" : "s"}`;
}

function identityHref(name) {
  return `#identity=${encodeURIComponent(name)}`;
}

function similarity(distance) {
  // Embeddings are unit length, so |a−b|² = 2 − 2·cos(a, b).
  return Math.max(0, 1 - (distance * distance) / 2);
}

// ------------------------------------------------------------------ gallery overview
async function loadSummary() {
  let info;
  try {
    info = await call("/v1/gallery?limit=0");
  } catch (error) {
    if (error.status === 401) {  // reads are protected: nothing to show before the key
      view.readsNeedKey = true;
      showKeyField(true);
      error.message = $("#api-key").value
        ? "This API key is not accepted; check it and enter it again."
        : "This gallery is protected: enter the API key above to search and browse it.";
    }
    throw error;
  }
  view.threshold = info.threshold;
  view.needsKey = info.limits.write_requires_key;
  view.readsNeedKey = info.limits.read_requires_key;
  if (view.needsKey) showKeyField(view.readsNeedKey);
  else $("#key-field").hidden = true;
  $("#text-form").hidden = !info.model.text_query;  // a text → image pair's gallery
  const threshold = info.threshold == null
    ? "no threshold calibrated"
    : `unknown beyond distance ${info.threshold.toPrecision(3)}`;
  $("#summary").textContent =
    `${info.count} images of ${info.identity_count} identities · generation ${info.generation} · ` +
    `${info.index_type} index · model ${info.model.fingerprint} on ${info.model.device} · ${threshold}`;
}

async function loadIdentities() {
  const params = new URLSearchParams({ contains: view.filter, offset: view.offset, limit: PAGE_SIZE });
  const page = await call(`/v1/identities?${params}`);
  if (page.offset > 0 && page.offset >= page.total) {  // the last page emptied (removals): step back
    view.offset = Math.max(0, page.total - PAGE_SIZE);
    return loadIdentities();
  }
  const rows = page.identities.map((row) =>
    el("tr", {}, el("td", {}, el("a", { href: identityHref(row.identity) }, row.identity)),
       el("td", {}, String(row.count))));
  if (!rows.length) {
    const empty = page.identity_count ? `no identity contains “${view.filter}”` : "the gallery is empty";
    rows.push(el("tr", {}, el("td", { colspan: "2", class: "muted" }, empty)));
  }
  $("#gallery-table tbody").replaceChildren(...rows);
  const shown = page.identities.length;
  const of = page.contains ? `${page.total} matching (of ${page.identity_count})` : `${page.total}`;
  $("#page-info").textContent = shown ? `${page.offset + 1}–${page.offset + shown} of ${of}` : "";
  $("#prev-page").disabled = page.offset === 0;
  $("#next-page").disabled = page.offset + shown >= page.total;
}

function refreshGallery() {
  // The summary first: it finds out whether reads need the key before thumbnails are asked for.
  return loadSummary().then(loadIdentities).catch((error) => {
    $("#summary").textContent = error.message;
  });
}

// ------------------------------------------------------------------ searching
function resetSearch() {
  $("#query-view").hidden = true;
  $("#verdict").textContent = "";
  $("#verdict").className = "";
  $("#legend").textContent = "";
  $("#results").replaceChildren();
  $("#query-image").removeAttribute("src");
  $("#query-image").hidden = false;
  $("#query-name").textContent = "";
  if (view.objectUrl) URL.revokeObjectURL(view.objectUrl);
  view.objectUrl = null;
  say("#search-error", "");
}

function matchCard(match, rank, result) {
  const beyond = result.threshold != null && match.distance > result.threshold;
  const best = rank === 0 && !result.unknown;
  const share = similarity(match.distance);
  return el("li", { class: `card match${beyond ? " beyond" : ""}${best ? " best" : ""}`,
                    "data-identity": match.identity, "data-distance": String(match.distance) },
    el("a", { class: "open", href: identityHref(match.identity),
              title: `see every image of ${match.identity}` },
      thumbnail(match.thumbnail, ""),
      el("span", { class: "rank" }, `#${rank + 1}`),
      el("span", { class: "identity" }, match.identity)),
    el("span", { class: "similarity", title: SIMILARITY_HELP }, `${Math.round(share * 100)}% similar`),
    el("span", { class: "distance" }, `distance ${match.distance.toFixed(3)}`),
    beyond ? el("span", { class: "badge" }, "beyond threshold") : null);
}

function showResult(result, file, text = null) {
  if (file) {
    view.objectUrl = URL.createObjectURL(file);
    $("#query-image").src = view.objectUrl;
    $("#query-name").textContent = file.name;
  } else {
    $("#query-image").hidden = true;  // a text query: the words stand in for the picture
    $("#query-name").textContent = `“${text}”`;
  }
  $("#results").replaceChildren(...result.identities.map((match, rank) => matchCard(match, rank, result)));
  const verdict = $("#verdict");
  const best = result.identities[0];
  if (!best) {
    verdict.textContent = "The gallery is empty.";
    verdict.className = "unknown";
  } else if (result.unknown) {
    verdict.textContent =
      `Unknown: even the nearest identity (${best.identity}, distance ${best.distance.toFixed(3)}) ` +
      `lies beyond the threshold ${result.threshold.toPrecision(3)}.`;
    verdict.className = "unknown";
  } else {
    verdict.textContent =
      `Best match: ${best.identity} (${Math.round(similarity(best.distance) * 100)}% similar, ` +
      `distance ${best.distance.toFixed(3)})`;
    verdict.className = "known";
  }
  const cutoff = result.threshold == null
    ? "No threshold is calibrated, so the nearest identity is always the answer."
    : `Beyond the threshold (distance > ${result.threshold.toPrecision(3)}) = unknown.`;
  $("#legend").textContent =
    `Lower distance = more alike; similarity = 1 − distance²/2 (the embeddings' cosine). ${cutoff}`;
  $("#legend").title = SIMILARITY_HELP;
  $("#query-view").hidden = false;
}

async function search(file, text = null) {
  const ticket = ++view.search;  // a later search supersedes this one, whichever answers first
  view.file = file;
  view.text = text;
  resetSearch();
  const name = file ? file.name : `“${text}”`;
  $("#search-status").textContent = `searching for ${name}…`;
  const form = new FormData();
  if (file) form.append("file", file);
  else form.append("text", text);
  try {
    const result = await call(`/v1/query?k=${$("#k").value}`, { method: "POST", body: form });
    if (ticket !== view.search) return;
    showResult(result, file, text);
    $("#search-status").textContent = "";
    refreshGallery();  // keep the overview current: other writers may have changed the gallery
  } catch (error) {
    if (ticket !== view.search) return;
    $("#search-status").textContent = "";
    say("#search-error", `${name}: ${explain(error)}`);
  }
}

// ------------------------------------------------------------------ adding
async function addImages(event) {
  event.preventDefault();
  const formNode = $("#add-form");
  const button = formNode.querySelector("button[type=submit]");
  const form = new FormData();
  form.append("identity", $("#add-identity").value);
  for (const file of $("#add-files").files) form.append("files", file);
  say("#add-status", "");
  say("#add-warning", "");
  say("#add-error", "");
  button.disabled = true;
  button.textContent = "Adding…";
  try {
    const report = await call("/v1/items", { method: "POST", body: form });
    formNode.reset();
    const who = report.items.length ? report.items[0].identity : "";
    say("#add-status",
        `Added ${images(report.added)} to “${who}”; the gallery now holds ${report.count}.`);
    if (report.duplicates.length) {
      say("#add-warning", report.duplicates
        .map((d) => `${d.name} is already in the gallery as ${d.identity} (item ${d.id})`)
        .join("; ") + ": the same picture now stands for two identities.");
    }
    await refreshGallery();
  } catch (error) {
    say("#add-error", explain(error));
  } finally {
    button.disabled = false;
    button.textContent = "Add";
  }
}

// ------------------------------------------------------------------ one identity
async function loadIdentity(name, more = false) {
  view.identityOffset = more ? view.identityOffset + ITEMS_PAGE : 0;
  if (!more) {
    $("#identity-title").textContent = name;
    $("#identity-count").textContent = "loading…";
    $("#identity-items").replaceChildren();
  }
  const params = new URLSearchParams({ offset: view.identityOffset, limit: ITEMS_PAGE });
  let page;
  try {
    page = await call(`/v1/identities/${encodeURIComponent(name)}?${params}`);
  } catch (error) {
    if (view.identity !== name) return;
    $("#identity-count").textContent = error.status === 404 ? "This identity is not in the gallery (any more)." : "";
    $("#remove-identity").hidden = true;
    if (error.status !== 404) say("#identity-error", explain(error));
    return;
  }
  if (view.identity !== name) return;
  $("#remove-identity").hidden = false;
  $("#identity-count").textContent = `${images(page.count)} in the gallery`;
  const cards = page.items.map((item) =>
    el("li", { class: "card", "data-id": String(item.id) },
      thumbnail(item.thumbnail, `${name}, item ${item.id}`),
      el("span", { class: "rank" }, `item ${item.id}`),
      item.path ? el("span", { class: "distance" }, item.path) : null,
      el("button", { type: "button", class: "danger remove-item", "data-id": String(item.id),
                     "aria-label": `Remove item ${item.id}` }, "Remove")));
  $("#identity-items").append(...cards);
  $("#identity-more").hidden = page.offset + page.items.length >= page.count;
}

async function removeItem(id) {
  if (!window.confirm(`Remove item ${id} of ${view.identity} from the gallery?`)) return;
  say("#identity-status", "");
  say("#identity-error", "");
  try {
    const report = await call(`/v1/items/${id}`, { method: "DELETE" });
    say("#identity-status", `Removed item ${id}; the gallery now holds ${report.count}.`);
    await loadIdentity(view.identity);
    refreshGallery();
  } catch (error) {
    say("#identity-error", explain(error));
  }
}

async function removeIdentity() {
  const name = view.identity;
  if (!window.confirm(`Remove ${name} and every image of it from the gallery?`)) return;
  say("#identity-status", "");
  say("#identity-error", "");
  try {
    const params = new URLSearchParams({ identity: name });
    const report = await call(`/v1/items?${params}`, { method: "DELETE" });
    say("#overview-status", `Removed ${name} (${images(report.removed)}); the gallery now holds ${report.count}.`);
    window.location.hash = "";
    await refreshGallery();
  } catch (error) {
    say("#identity-error", explain(error));
  }
}

// ------------------------------------------------------------------ routing and set-up
function route() {
  const match = window.location.hash.match(/^#identity=(.*)$/);
  const name = match ? decodeURIComponent(match[1]) : null;
  view.identity = name;
  $("#home").hidden = name !== null;
  $("#identity-view").hidden = name === null;
  say("#identity-status", "");
  say("#identity-error", "");
  if (name !== null) {
    say("#overview-status", "");
    loadIdentity(name);
    $("#identity-title").focus();
  }
}

function setUp() {
  const drop = $("#drop");
  $("#api-key").value = sessionStorage.getItem(KEY_STORE) || "";
  $("#api-key").addEventListener("change", (event) => {
    sessionStorage.setItem(KEY_STORE, event.target.value);
    if (!view.readsNeedKey) return;  // writes only: the next add or removal sends it
    refreshGallery();  // reads protected: the gallery shows once the key is right
    if (view.identity !== null) loadIdentity(view.identity);
  });
  $("#file-input").addEventListener("change", (event) => {
    if (event.target.files[0]) search(event.target.files[0]);
    event.target.value = "";  // choosing the same file again searches again
  });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) search(event.dataTransfer.files[0]);
  });
  $("#k").addEventListener("change", () => {
    if (view.file) search(view.file);
    else if (view.text) search(null, view.text);
  });
  $("#text-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("#text-query").value.trim();
    if (text) search(null, text);
  });
  $("#add-form").addEventListener("submit", addImages);

  let typing = null;
  $("#filter").addEventListener("input", (event) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      view.filter = event.target.value.trim();
      view.offset = 0;
      loadIdentities().catch((error) => { $("#page-info").textContent = error.message; });
    }, 150);
  });
  $("#prev-page").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - PAGE_SIZE);
    loadIdentities();
  });
  $("#next-page").addEventListener("click", () => {
    view.offset += PAGE_SIZE;
    loadIdentities();
  });

  $("#identity-title").setAttribute("tabindex", "-1");
  $("#identity-items").addEventListener("click", (event) => {
    const button = event.target.closest("button.remove-item");
    if (button) removeItem(Number(button.dataset.id));
  });
  $("#remove-identity").addEventListener("click", removeIdentity);
  $("#identity-more").addEventListener("click", () => loadIdentity(view.identity, true));
  window.addEventListener("hashchange", route);
  refreshGallery();
  route();
}

document.addEventListener("DOMContentLoaded", setUp);
