// The search page: plain DOM and fetch against /v1, no build step and nothing fetched from elsewhere.
"use strict";

const $ = (selector) => document.querySelector(selector);

function errorText(body, status) {
  return body && body.error ? `${body.error.message} (${status})` : `request failed (${status})`;
}

async function call(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(errorText(body, response.status));
  return body;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

async function loadGallery() {
  const info = await call("/v1/gallery");
  const threshold = info.threshold == null ? "no threshold calibrated" : `unknown beyond distance ${info.threshold.toPrecision(3)}`;
  $("#summary").textContent =
    `${info.count} images of ${info.identity_count} identities · generation ${info.generation} · ` +
    `${info.index_type} index · model ${info.model.fingerprint} on ${info.model.device} · ${threshold}`;
  const rows = info.identities.map((row) => el("tr", {}, el("td", {}, row.identity), el("td", {}, String(row.count))));
  if (info.identities_truncated) {
    rows.push(el("tr", {}, el("td", { colspan: "2", class: "muted" }, `… the first ${info.identities.length} of ${info.identity_count}`)));
  }
  $("#gallery-table tbody").replaceChildren(...rows);
}

function showMatches(result) {
  const items = result.identities.map((match, rank) =>
    el("li", { class: "match", "data-identity": match.identity },
      el("img", { src: `/v1/items/${match.id}/image?size=160`, alt: match.identity, loading: "lazy" }),
      el("span", { class: "identity" }, match.identity),
      el("span", { class: "distance" }, `distance ${match.distance.toFixed(3)}`),
      rank === 0 && result.unknown ? el("span", { class: "badge" }, "beyond threshold") : ""));
  $("#results").replaceChildren(...items);
  $("#results").classList.toggle("beyond", result.unknown);
  const verdict = $("#verdict");
  if (!result.identities.length) verdict.textContent = "The gallery is empty.";
  else if (result.unknown) verdict.textContent = `Unknown: the nearest identity is farther than the threshold (${result.threshold.toPrecision(3)}).`;
  else verdict.textContent = `Best match: ${result.identities[0].identity}`;
  verdict.className = result.unknown ? "unknown" : "known";
}

async function search(file) {
  $("#search-error").hidden = true;
  $("#query-view").hidden = false;
  $("#query-image").src = URL.createObjectURL(file);
  $("#query-name").textContent = file.name;
  $("#results").replaceChildren(el("li", { class: "muted" }, "searching…"));
  const form = new FormData();
  form.append("file", file);
  try {
    showMatches(await call(`/v1/query?k=${$("#k").value}`, { method: "POST", body: form }));
    loadGallery().catch(() => {});  // keep the overview current: other writers may have changed the gallery
  } catch (error) {
    $("#results").replaceChildren();
    $("#search-error").textContent = error.message;
    $("#search-error").hidden = false;
  }
}

async function addImages(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("identity", $("#add-identity").value);
  for (const file of $("#add-files").files) form.append("files", file);
  const headers = $("#api-key").value ? { "X-API-Key": $("#api-key").value } : {};
  $("#add-status").textContent = "adding…";
  try {
    const report = await call("/v1/items", { method: "POST", body: form, headers });
    $("#add-status").textContent = `added ${report.added} image(s); the gallery now holds ${report.count}`;
    await loadGallery();
  } catch (error) {
    $("#add-status").textContent = error.message;
  }
}

function setUp() {
  const drop = $("#drop");
  $("#file-input").addEventListener("change", (event) => event.target.files[0] && search(event.target.files[0]));
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) search(event.dataTransfer.files[0]);
  });
  $("#add-form").addEventListener("submit", addImages);
  loadGallery().catch((error) => { $("#summary").textContent = error.message; });
}

document.addEventListener("DOMContentLoaded", setUp);
