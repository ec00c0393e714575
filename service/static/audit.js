// The audit page: asks GET /v1/audit (with the API key) and draws each finding as a contact
// sheet: the key item, then the others with their distance from it, marked same or other
// identity. Thumbnails are fetched with the key too (reads may be protected) and shown as blobs.
"use strict";

const KINDS = {
  exact_duplicate: "Exact duplicates (same file content)",
  near_duplicate: "Near-duplicates (resized or re-encoded copies)",
  mislabel: "Likely mislabels",
  overlap: "Overlapping identities (merge candidates)",
  loose: "Loose identities (two people under one name?)",
};

const $ = (id) => document.getElementById(id);
const keyInput = $("api-key");
keyInput.value = sessionStorage.getItem("siamese-api-key") || "";

function headers() {
  const key = keyInput.value.trim();
  return key ? { "X-API-Key": key } : {};
}

function text(tag, content, className) {
  const node = document.createElement(tag);
  node.textContent = content;
  if (className) node.className = className;
  return node;
}

async function thumbnail(img, url) {
  try {
    const answer = await fetch(url + "?size=160", { headers: headers() });
    if (answer.ok) img.src = URL.createObjectURL(await answer.blob());
  } catch (_) { /* the card still names the item */ }
}

function headline(finding) {
  const names = finding.identities.join(" / ");
  const score = finding.score.toFixed(3);
  if (finding.kind === "mislabel") {
    return `item ${finding.items[0].id} filed under ${finding.identities[0]} looks like ${finding.suggested_identity} (sure: ${score})`;
  }
  if (finding.kind === "overlap") return `${names}: score ${score}`;
  if (finding.kind === "loose") return `${names}: spread ${score}× the typical identity's`;
  const across = finding.identities.length > 1 ? " — under different identities" : "";
  return `${finding.size} items of ${names}${across}`;
}

function card(item, key) {
  const li = document.createElement("li");
  const same = item.identity === key.identity;
  li.className = item === key ? "key" : same ? "same" : "other";
  const img = document.createElement("img");
  img.alt = `item ${item.id} of ${item.identity}`;
  thumbnail(img, item.thumbnail);
  li.append(img, text("span", item.identity, "name"));
  const role = item === key ? "key item" : `${item.distance.toFixed(3)} · ${same ? "same" : "other"} identity`;
  li.append(text("span", `#${item.id} · ${role}`));
  if (item.path) li.append(text("span", item.path, "path"));
  return li;
}

function draw(report) {
  const c = report.calibration;
  const calibration = $("calibration");
  calibration.textContent =
    `${report.count} items of ${report.identities} identities (${report.index_type}, generation ${report.generation}), ` +
    `audited in ${report.seconds.total.toFixed(1)} s. Duplicate distance ${c.duplicate_distance.toFixed(4)} (${c.duplicate_source}); ` +
    `identity distance ${c.identity_distance.toFixed(4)} (${c.identity_source}).`;
  calibration.hidden = false;
  const body = $("totals").querySelector("tbody");
  body.replaceChildren();
  const findings = $("findings");
  findings.replaceChildren();
  for (const [kind, title] of Object.entries(KINDS)) {
    const row = document.createElement("tr");
    row.append(text("td", title), text("td", String(report.totals[kind])));
    body.append(row);
    const listed = report.findings[kind];
    if (!listed.length) continue;
    const section = document.createElement("section");
    section.className = "kind";
    section.id = `kind-${kind}`;
    const more = report.totals[kind] > listed.length ? ` (first ${listed.length} of ${report.totals[kind]})` : "";
    section.append(text("h3", title + more));
    for (const finding of listed) {
      const article = document.createElement("article");
      article.className = "finding";
      article.append(text("h4", headline(finding)));
      const sheet = document.createElement("ol");
      sheet.className = "sheet";
      sheet.setAttribute("aria-label", "items of this finding, the key item first");
      for (const item of finding.items) sheet.append(card(item, finding.items[0]));
      article.append(sheet);
      section.append(article);
    }
    findings.append(section);
  }
  $("totals").hidden = false;
}

$("audit-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  sessionStorage.setItem("siamese-api-key", keyInput.value.trim());
  $("audit-error").hidden = true;
  $("audit-status").textContent = "auditing the gallery…";
  $("run").disabled = true;
  try {
    const answer = await fetch(`/v1/audit?k=${encodeURIComponent($("k").value)}`, { headers: headers() });
    const payload = await answer.json();
    if (!answer.ok) throw new Error(payload.error ? payload.error.message : answer.statusText);
    draw(payload);
    $("audit-status").textContent = "audit done";
  } catch (error) {
    $("audit-status").textContent = "";
    $("audit-error").textContent = `audit failed: ${error.message}`;
    $("audit-error").hidden = false;
  } finally {
    $("run").disabled = false;
  }
});
