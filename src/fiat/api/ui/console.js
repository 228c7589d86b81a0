// The governance console: the transparency log decoded as it grows (/v1/activity, then
// /v1/events/stream), approvals decided with the approver's own key in this browser, and
// admin revocations. Summaries are decoded, not verified: `fiat verify` proves.
//
// The approver's key: a PKCS#8 PEM file the approver picks, imported with WebCrypto
// (Ed25519, RFC 8037/8032). Its private part never leaves this page: it signs a DPoP proof
// (RFC 9449) to read the queue and the approval statement (in-toto Statement v1 in DSSE,
// RFC 8785 JSON) the authority logs, exactly as `fiat approve` builds them.
import { h, api, ApiError, adminToken, fmtTime, short, subscribe, sha256Hex } from "/ui/assets/common.js";

const $ = (id) => document.getElementById(id);
const SHOWN = 300; // rows per table
const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
const APPROVAL_TYPE = "https://fiat.local/predicate/approval/v1";
const IN_TOTO = "application/vnd.in-toto+json";

const state = {
  last: -1, // the highest log index seen
  entries: new Map(), // index -> summary
  permits: new Map(), // jti -> summary
  renewedBy: new Map(), // jti -> the permit renewing it
  receipts: new Map(), // jti -> receipt summary
  revocations: [],
  decisions: [],
  approvals: new Map(), // approval id -> approval statement summary
  pending: new Map(), // approval id -> pending decision summary
  queue: null, // /v1/approvals?status=pending, once an approver key is loaded
  keys: [],
};
let approver = null; // {key: CryptoKey (not extractable), x, kid, name}

function showError(err) {
  const node = $("error");
  node.hidden = !err;
  node.textContent = err ? String(err.message || err) : "";
}

// -- the log ---------------------------------------------------------------------------

function take(e) {
  if (e.index <= state.last && state.entries.has(e.index)) return false;
  state.entries.set(e.index, e);
  state.last = Math.max(state.last, e.index);
  switch (e.kind) {
    case "permit":
      state.permits.set(e.permitId, e);
      if (e.renewedFrom) state.renewedBy.set(e.renewedFrom, e);
      break;
    case "decision":
      state.decisions.push(e);
      if (e.decision === "pending" && e.approvalId) state.pending.set(e.approvalId, e);
      break;
    case "approval":
      state.approvals.set(e.approvalId, e);
      break;
    case "revocation":
      state.revocations.push(e);
      break;
    case "receipt":
      state.receipts.set(e.permitId, e);
      break;
    case "policy":
      schedule(loadPolicies);
      break;
    case "key-rotation":
      schedule(loadKeys);
      break;
    default:
      break;
  }
  return true;
}

const later = new Set();
let renderQueued = false;
function schedule(fn) {
  later.add(fn);
  queueRender();
}
function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
    for (const fn of later) fn().catch(showError);
    later.clear();
  });
}

/** On load the page reads at most this many of the newest entries (a long log stays quick to open). */
const HISTORY = 5000;

async function catchUp() {
  if (state.last < 0) {
    const { treeSize } = await api("/v1/activity?after=-1&limit=1");
    state.last = Math.max(-1, treeSize - 1 - HISTORY);
    if (state.last >= 0) $("decoded-note").append(` Showing the newest ${HISTORY} of ${treeSize} log entries (older ones: /v1/activity?after=).`);
  }
  for (;;) {
    const page = await api(`/v1/activity?after=${state.last}&limit=1000`);
    page.entries.forEach(take);
    if (!page.entries.length || state.last >= page.treeSize - 1) return;
  }
}

// -- permit state ------------------------------------------------------------------------

function revokedBy(p) {
  const chain = new Set();
  for (let at = p; at && !chain.has(at.permitId); at = state.permits.get(at.renewedFrom)) chain.add(at.permitId);
  return state.revocations.find(
    (r) =>
      (r.revocationKind === "permit" && chain.has(r.target)) ||
      (r.revocationKind === "principal" && (r.target === p.principalKey || r.target === p.principal)) ||
      (r.revocationKind === "runtime" && r.target === p.runtime),
  );
}

/** live | renewed | expired | revoked, or the receipt's outcome once the execution ended. */
function permitState(p) {
  const receipt = state.receipts.get(p.permitId);
  if (revokedBy(p) && (!receipt || receipt.outcome !== "completed")) return "revoked";
  if (state.renewedBy.has(p.permitId)) return "renewed";
  if (receipt) return receipt.outcome || "ended";
  if (p.exp !== null && p.exp * 1000 < Date.now()) return "expired";
  return "live";
}

// -- rendering -----------------------------------------------------------------------------

const badge = (text) => h("span", { class: `badge ${text}` }, text);
const code = (text, n = 14) => h("code", { title: text || "" }, short(text || "—", n));

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function render() {
  const decisions = state.decisions.slice(-SHOWN).reverse();
  $("decision-count").textContent = `(${state.decisions.length})`;
  fill(
    $("decisions").tBodies[0],
    decisions.map((d) =>
      h(
        "tr",
        { "data-index": d.index, "data-decision": d.decision },
        h("td", {}, String(d.index)),
        h("td", {}, fmtTime(d.time)),
        h("td", {}, badge(d.decision || "?")),
        h("td", {}, d.principal || "—"),
        h("td", {}, d.action || "—"),
        h("td", {}, d.resource || "—"),
        h("td", {}, (d.determiningPolicies || []).join(", ") || "—"),
        h("td", {}, (d.shadow || []).map((s) => `${s.scope}: ${s.decision}`).join("; ") || "—"),
        h("td", {}, (d.reasons || []).join("; ")),
      ),
    ),
  );
  const permits = [...state.permits.values()].slice(-SHOWN).reverse();
  $("permit-count").textContent = `(${state.permits.size})`;
  fill(
    $("permits").tBodies[0],
    permits.map((p) => {
      const st = permitState(p);
      return h(
        "tr",
        { "data-permit": p.permitId, "data-state": st },
        h("td", {}, String(p.index)),
        h("td", {}, code(p.permitId, 16)),
        h("td", {}, badge(st)),
        h("td", {}, p.principal || "—"),
        h("td", {}, p.action || "—"),
        h("td", {}, p.resource || "—"),
        h("td", {}, fmtTime(p.exp)),
        h("td", {}, p.renewedFrom ? code(p.renewedFrom, 12) : "—"),
        h(
          "td",
          { class: "privileged" },
          st === "live"
            ? h("button", { type: "button", "aria-label": `Revoke permit ${p.permitId}…`, onclick: () => prepareRevoke("permit", p.permitId) }, "revoke…")
            : "",
        ),
      );
    }),
  );
  renderQueue();
  fill(
    $("approvals-done").tBodies[0],
    [...state.approvals.values()].reverse().map((a) =>
      h(
        "tr",
        { "data-approval": a.approvalId },
        h("td", {}, String(a.index)),
        h("td", {}, code(a.approvalId, 18)),
        h("td", {}, badge(a.decision === "approve" ? "approved" : "denied")),
        h("td", {}, a.approver || "—"),
        h("td", {}, (a.reasons || []).join("; ")),
      ),
    ),
  );
  fill(
    $("revocations").tBodies[0],
    state.revocations
      .slice()
      .reverse()
      .map((r) =>
        h(
          "tr",
          {},
          h("td", {}, String(r.index)),
          h("td", {}, fmtTime(r.time)),
          h("td", {}, String(r.epoch ?? "—")),
          h("td", {}, r.revocationKind || "—"),
          h("td", {}, code(r.target, 40)),
          h("td", {}, (r.reasons || []).join("; ")),
        ),
      ),
  );
}

/** Pending approvals: from the authority's queue once an approver key is loaded, else from the log. */
function queueRows() {
  if (state.queue) {
    return state.queue
      .filter((a) => a.status === "pending" && !state.approvals.has(a.id))
      .map((a) => ({
        id: a.id,
        time: Date.parse(a.requestedAt) / 1000,
        principal: a.request.principal,
        action: a.request.action,
        resource: a.request.resource,
        context: JSON.stringify(a.request.context ?? {}),
        group: a.group,
        actionDigest: a.actionDigest,
      }));
  }
  return [...state.pending.values()]
    .filter((d) => !state.approvals.has(d.approvalId))
    .map((d) => ({
      id: d.approvalId,
      time: d.time,
      principal: d.principal,
      action: d.action,
      resource: d.resource,
      context: "(load an approver key to read it)",
      group: d.approvalGroup || "—",
      actionDigest: d.actionDigest,
    }));
}

function renderQueue() {
  const rows = queueRows();
  const tbody = $("approvals").tBodies[0];
  if (!rows.length) {
    fill(tbody, [h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No approval is waiting."))]);
    return;
  }
  fill(
    tbody,
    rows.map((a) =>
      h(
        "tr",
        { "data-approval": a.id },
        h("td", {}, code(a.id, 18)),
        h("td", {}, fmtTime(a.time)),
        h("td", {}, a.principal),
        h("td", {}, a.action),
        h("td", {}, a.resource),
        h("td", {}, h("code", {}, a.context)),
        h("td", {}, a.group),
        h(
          "td",
          { class: "privileged" },
          h("button", { type: "button", class: "primary", disabled: !approver, "aria-label": `Approve ${a.id}`, onclick: () => decide(a, true) }, "Approve"),
          " ",
          h("button", { type: "button", class: "danger", disabled: !approver, "aria-label": `Deny ${a.id}`, onclick: () => decide(a, false) }, "Deny"),
        ),
      ),
    ),
  );
}

// -- policies, keys, trust root -------------------------------------------------------------

async function loadPolicies() {
  const { versions } = await api("/v1/policies");
  fill(
    $("policies").tBodies[0],
    versions
      .slice()
      .reverse()
      .map((v) =>
        h(
          "tr",
          {},
          h("td", {}, `v${v.version}`),
          h("td", {}, fmtTime(v.time)),
          h("td", {}, code(v.digest, 16)),
          h("td", {}, String(v.logIndex)),
          h("td", {}, h("button", { type: "button", "aria-label": `Show the text of version ${v.version}`, onclick: () => showPolicy(v.version) }, "show")),
        ),
      ),
  );
  for (const [id, pick] of [["diff-from", versions.length - 2], ["diff-to", versions.length - 1]]) {
    const select = $(id);
    const current = select.value;
    select.replaceChildren(...versions.map((v) => h("option", { value: v.version }, `v${v.version}`)));
    select.value = current && versions.some((v) => String(v.version) === current) ? current : String(versions[Math.max(pick, 0)]?.version ?? "");
  }
}

async function showPolicy(version) {
  const p = await api(`/v1/policies/${version}`);
  $("policy-text").textContent = Object.entries(p.files)
    .map(([name, text]) => `// ---- v${p.version}/${name}\n${text}`)
    .join("\n");
}

async function showDiff() {
  const from = $("diff-from").value;
  const to = $("diff-to").value;
  if (!from || !to) return;
  const d = await api(`/v1/policies/diff?from=${encodeURIComponent(from)}&to=${encodeURIComponent(to)}`);
  $("policy-text").textContent = d.diff || `v${from} and v${to} have the same files.`;
}

async function loadKeys() {
  const { keys } = await api("/v1/keys");
  state.keys = keys;
  const order = ["authority", "log", "runtime", "approver", "witness"];
  const sorted = keys.slice().sort((a, b) => order.indexOf(a.role) - order.indexOf(b.role) || a.name.localeCompare(b.name));
  fill(
    $("keys").tBodies[0],
    sorted.map((k) =>
      h(
        "tr",
        { "data-kid": k.kid },
        h("td", {}, k.role),
        h("td", {}, k.name),
        h("td", {}, code(k.kid, 12)),
        h("td", {}, k.validFrom),
        h("td", {}, k.validUntil || "open"),
        h("td", {}, (k.groups || []).join(", ") || "—"),
        h("td", {}, badge(k.active ? "live" : "expired")),
      ),
    ),
  );
  const res = await fetch("/v1/trust/root", { cache: "no-store", credentials: "omit" });
  const bytes = await res.arrayBuffer();
  const said = res.headers.get("Fiat-Trust-Root-Fingerprint") || "";
  const mine = "sha256:" + (await sha256Hex(bytes));
  $("trust-root-fp").textContent = said === mine ? mine : `${mine} (the server said ${said || "nothing"}: they differ)`;
}

// -- the approver's key, in this browser only -----------------------------------------------

const enc = new TextEncoder();
const b64url = (bytes) => b64std(bytes).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
function b64std(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s);
}

/** RFC 8785 (JCS) for what this page signs: objects, arrays, strings, integers, booleans, null. */
function jcs(v) {
  if (v === null || typeof v !== "object") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(jcs).join(",")}]`;
  return `{${Object.keys(v)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${jcs(v[k])}`)
    .join(",")}}`;
}

/** The DER of a PKCS#8 "PRIVATE KEY" PEM block (RFC 7468 §10); an encrypted one is refused. */
function pemToDer(text) {
  if (/BEGIN ENCRYPTED PRIVATE KEY/.test(text))
    throw new Error("this key file is passphrase-protected; the browser cannot open it: approve with `fiat approve` instead");
  const m = /-----BEGIN PRIVATE KEY-----([\s\S]*?)-----END PRIVATE KEY-----/.exec(text);
  if (!m) throw new Error("not a PKCS#8 PEM private key (expected -----BEGIN PRIVATE KEY-----); pick the approver-….pem file of your home's keys folder");
  const bin = atob(m[1].replace(/\s+/g, ""));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

async function loadApproverKey(file) {
  const der = pemToDer(await file.text());
  let probe;
  try {
    probe = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, true, ["sign"]);
  } catch {
    throw new Error("this file holds no Ed25519 private key (Fiat's keys are Ed25519, PKCS#8 PEM)");
  }
  const { x } = await crypto.subtle.exportKey("jwk", probe); // the public part only is kept
  // The signing key itself is re-imported as not extractable: no script can read it back.
  const key = await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
  der.fill(0);
  // RFC 7638 thumbprint: the key id Fiat gives every key.
  const kid = b64url(await crypto.subtle.digest("SHA-256", enc.encode(`{"crv":"Ed25519","kty":"OKP","x":"${x}"}`)));
  if (!state.keys.length) await loadKeys();
  const enrolled = state.keys.find((k) => k.kid === kid && k.role === "approver");
  return { key, x, kid, name: enrolled ? enrolled.name : "", enrolled: Boolean(enrolled && enrolled.active) };
}

async function signB64url(bytes) {
  return b64url(await crypto.subtle.sign({ name: "Ed25519" }, approver.key, bytes));
}

/** A DPoP proof (RFC 9449 §4.2) by the approver's key for one request to this server. */
async function dpop(method, path) {
  const header = { alg: "EdDSA", typ: "dpop+jwt", jwk: { crv: "Ed25519", kty: "OKP", x: approver.x } };
  const claims = { jti: b64url(crypto.getRandomValues(new Uint8Array(16))), htm: method, htu: location.origin + path, iat: Math.floor(Date.now() / 1000) };
  const input = `${b64url(enc.encode(JSON.stringify(header)))}.${b64url(enc.encode(JSON.stringify(claims)))}`;
  return `${input}.${await signB64url(enc.encode(input))}`;
}

async function loadQueue() {
  if (!approver || !approver.enrolled) return; // the authority would refuse to list it for this key
  try {
    state.queue = await api("/v1/approvals?status=pending&limit=1000", { headers: { DPoP: await dpop("GET", "/v1/approvals") } });
  } catch (err) {
    state.queue = null;
    $("approver-status").textContent += ` The authority would not list the queue for this key (${err.message}); pending requests are shown from the log.`;
  }
  queueRender();
}

/** RFC 3339 UTC to the second, as Fiat writes times. */
const rfc3339 = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");

/** The approval statement `fiat approve` signs (fiat.prove.evidence.approval_statement), in DSSE. */
async function approvalEnvelope(a, approve, reason) {
  const statement = {
    _type: STATEMENT_TYPE,
    subject: [{ name: "action-request", digest: { sha256: a.actionDigest } }],
    predicateType: APPROVAL_TYPE,
    predicate: { id: a.id, decision: approve ? "approve" : "deny", approver: approver.name, time: rfc3339(new Date()), reason },
  };
  const payload = enc.encode(jcs(statement));
  const type = enc.encode(IN_TOTO);
  // DSSE v1 PAE: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
  const head = enc.encode(`DSSEv1 ${type.length} ${IN_TOTO} ${payload.length} `);
  const pae = new Uint8Array(head.length + payload.length);
  pae.set(head);
  pae.set(payload, head.length);
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, approver.key, pae);
  return { payload: b64std(payload), payloadType: IN_TOTO, signatures: [{ keyid: approver.kid, sig: b64std(sig) }] };
}

async function decide(a, approve) {
  const out = $("approval-result");
  out.className = "";
  out.textContent = `${approve ? "Approving" : "Denying"} ${a.id}…`;
  try {
    if (!approver) throw new Error("load your approver key first");
    const envelope = await approvalEnvelope(a, approve, $("approval-reason").value);
    const r = await api(`/v1/approvals/${encodeURIComponent(a.id)}`, { method: "POST", body: { envelope } });
    out.className = "notice ok";
    out.textContent = `${a.id}: ${r.status} by ${r.approver} (log index ${r.logIndex}).`;
    if (state.queue) state.queue = state.queue.filter((q) => q.id !== a.id);
    queueRender();
  } catch (err) {
    out.className = "notice bad";
    out.textContent = `${a.id}: the authority refused: ${err.message}`;
  }
}

/** Fill the (admin) revocation form for one target; the admin still confirms with Revoke. */
function prepareRevoke(kind, target) {
  $("revoke-kind").value = kind;
  $("revoke-target").value = target;
  $("revoke-reason").focus();
}

// -- modes ----------------------------------------------------------------------------------------

function showMode() {
  const parts = [];
  if (adminToken.get()) parts.push("Admin token entered (this tab only): revocations are enabled.");
  if (approver) parts.push(`Approver key loaded: ${approver.name || "not enrolled"} (${short(approver.kid, 12)}), in this browser only.`);
  const node = $("mode");
  node.classList.toggle("ok", parts.length > 0);
  node.textContent = parts.length ? parts.join(" ") : "Read-only: no credential. Everything on this page is public; the controls marked admin or approver need the admin token or an approver's key.";
}

function wire() {
  $("approver-key").addEventListener("change", async (ev) => {
    const file = ev.target.files && ev.target.files[0];
    ev.target.value = ""; // the page keeps the CryptoKey, not the file
    if (!file) return;
    const status = $("approver-status");
    try {
      approver = await loadApproverKey(file);
      status.textContent = approver.enrolled
        ? `Key ${short(approver.kid, 12)} is the approver key of ${approver.name}.`
        : `Key ${short(approver.kid, 12)} is not an active approver key of this authority: it will be refused.`;
      await loadQueue();
    } catch (err) {
      approver = null;
      status.textContent = err.message;
    }
    showMode();
    queueRender();
  });
  $("approver-forget").addEventListener("click", () => {
    approver = null;
    state.queue = null;
    $("approver-status").textContent = "No approver key loaded.";
    showMode();
    queueRender();
  });
  $("admin-token").value = adminToken.get();
  $("admin-token").addEventListener("change", (ev) => {
    adminToken.set(ev.target.value.trim());
    showMode();
  });
  $("admin-forget").addEventListener("click", () => {
    adminToken.set("");
    $("admin-token").value = "";
    showMode();
  });
  $("revoke-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    adminToken.set($("admin-token").value.trim());
    showMode();
    const out = $("revoke-result");
    const body = { kind: $("revoke-kind").value, target: $("revoke-target").value.trim(), reason: $("revoke-reason").value.trim() };
    try {
      const r = await api("/v1/revocations", { method: "POST", body, admin: true });
      out.className = "notice ok";
      out.textContent = `Revoked ${body.kind} ${body.target}: epoch ${r.revocationEpoch}, log index ${r.logIndex}.`;
    } catch (err) {
      out.className = "notice bad";
      out.textContent = err instanceof ApiError && err.status === 401 ? `Refused: ${err.message}` : `Refused: ${err.message}`;
    }
  });
  $("diff-show").addEventListener("click", () => showDiff().catch(showError));
}

async function main() {
  wire();
  showMode();
  await Promise.all([catchUp(), loadPolicies(), loadKeys()]);
  render();
  subscribe(() => `/v1/events/stream?after=${state.last}`, {
    entry: (e) => {
      if (take(e)) queueRender();
      if (e.kind === "decision" && e.decision === "pending" && approver) loadQueue();
    },
    overflow: () => catchUp().then(queueRender, showError),
    "going-away": () => {},
  });
  setInterval(queueRender, 5000); // expiry is a matter of time, not of new entries
}

main().catch(showError);
