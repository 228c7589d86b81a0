// The proof viewer (/ui/verify): pins a trust root, takes a bundle (dropped, chosen, or fetched
// from this server for /ui/verify#<permit id> BEFORE verification starts), then verifies it
// entirely in this browser with ./verifier/verify.js — which makes no network request.

import { ApiError, adminToken, h, sha256Hex } from "./common.js";
import { STEPS, exitCodeOf, verifyBundle } from "./verifier/verify.js";
import { MEDIA_TYPE as SPLIT_VIEW_MEDIA_TYPE } from "./verifier/splitview.js";

window.fiatVerify = verifyBundle; // for tests and the curious: (bundleBytes, rootBytes, options) → report
window.fiatSteps = STEPS;

const STORE = "fiat.verify.trustRoot"; // the pinned trust root (text), kept across visits
const $ = (id) => document.getElementById(id);
const enc = new TextEncoder();
let rootBytes = null;
let bundleBytes = null;
let bundleName = "";

function notice(node, text, kind = "") {
  node.className = `notice ${kind}`.trim();
  node.replaceChildren(...(Array.isArray(text) ? text : [text]));
}

async function pin(bytes, source) {
  // Pinning shows what was pinned (its SHA-256 fingerprint); whether it parses is the verifier's
  // first question (a malformed root is reported as such, exactly as `fiat verify` does).
  rootBytes = bytes;
  const fp = await sha256Hex(bytes);
  try {
    localStorage.setItem(STORE, new TextDecoder().decode(bytes));
  } catch {
    /* storage full or disabled: pinned for this visit only */
  }
  let summary = "";
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes));
    summary = ` — issuer ${v.issuer}, log ${v.log && v.log.origin}, ${Array.isArray(v.keys) ? v.keys.length : "?"} keys`;
  } catch {
    summary = " — not JSON; verification will report it malformed";
  }
  notice($("root-status"), [`Pinned (${source})${summary}. Fingerprint: `, h("span", { class: "fingerprint", id: "root-fp" }, `sha256:${fp}`)], "ok");
  refresh();
}

function refresh() {
  $("run").disabled = !(rootBytes && bundleBytes);
}

async function takeBundle(bytes, name) {
  bundleBytes = bytes;
  bundleName = name;
  notice($("bundle-status"), `${name}: ${bytes.length.toLocaleString()} bytes, SHA-256 ${(await sha256Hex(bytes)).slice(0, 16)}…`);
  refresh();
  if (rootBytes) await run();
}

const readFile = async (file) => new Uint8Array(await file.arrayBuffer());

function render(report, ms) {
  const body = $("steps").querySelector("tbody");
  body.replaceChildren();
  if (!report.steps) {
    notice($("verdict"), `NOT verified: ${report.failedStep} — ${report.error} (fiat verify exit 2)`, "bad");
  } else {
    report.steps.forEach((s, i) => {
      const label = { pass: "✓ pass", fail: "✗ fail", skip: "– skipped" }[s.status];
      body.append(
        h("tr", { class: s.status, "data-step": s.step, "data-status": s.status },
          h("td", {}, String(i + 1)), h("td", {}, h("code", {}, s.step)),
          h("td", { class: `status ${s.status === "skip" ? "skipped" : s.status}` }, label), h("td", {}, s.detail)),
      );
    });
    if (report.mediaType === SPLIT_VIEW_MEDIA_TYPE) {
      // A split-view proof: worded as `fiat verify PROOF` words it (docs/formats.md, "Split-view proofs").
      if (report.verified) {
        const [a, b] = report.checkpoints;
        notice($("verdict"), `PROVEN: the log ${report.origin} signed two inconsistent checkpoints: ${report.summary} (size ${a.size} root ${a.root}; size ${b.size} root ${b.root})`, "bad");
      } else {
        notice($("verdict"), `NOT proven: fails at ${report.failedStep} (fiat verify exit ${exitCodeOf(report)}).`, "bad");
      }
    } else if (report.verified) {
      const what = report.outcome === "halted" ? `halted at ${report.haltReason}` : report.outcome ? `${report.outcome} (exit ${report.exitCode})` : "no receipt";
      notice($("verdict"), `Verified: execution ${report.permit} ${what}; containment: ${report.containment || "not recorded"}.`, "ok");
    } else {
      notice($("verdict"), `NOT verified: failed at ${report.failedStep} (fiat verify exit 1).`, "bad");
    }
  }
  // The assurance level, worded as `fiat verify` prints it (docs/formats.md, "Witnesses and assurance").
  const a = report.assurance;
  $("assurance").hidden = !a;
  $("assurance").textContent = a ? `Assurance: ${a.text}${a.quorum ? ` (the trust root requires ${a.quorum})` : ""}.` : "";
  $("assurance").dataset.level = a ? a.level : "";
  $("verdict").dataset.verified = String(report.verified);
  $("verdict").dataset.failedStep = report.failedStep || "";
  $("timing").textContent = `Verified in this browser in ${ms.toFixed(1)} ms, with no network request (exit status ${exitCodeOf(report)}).`;
}

async function run() {
  if (!rootBytes || !bundleBytes) return;
  notice($("verdict"), "Verifying…");
  const t0 = performance.now();
  const report = await verifyBundle(bundleBytes, rootBytes);
  const ms = performance.now() - t0;
  window.fiatLast = { report, ms, bundle: bundleName };
  render(report, ms);
  document.body.dataset.verifyDone = String((Number(document.body.dataset.verifyDone) || 0) + 1);
}

async function fetchBundle(jti) {
  if (!adminToken.get()) {
    $("token-box").hidden = false;
    notice($("bundle-status"), [
      `To fetch the bundle of ${jti} from this server, enter the admin token (fiat serve prints where it is), or run `,
      h("code", {}, `fiat bundle ${jti} -o bundle.json`), " and drop the file here.",
    ]);
    return;
  }
  notice($("bundle-status"), `Fetching the bundle of ${jti}…`);
  try {
    // The raw bytes, not res.json(): the verifier must judge exactly what the server sent
    // (JSON.parse would silently drop a duplicate member name, for one).
    const res = await fetch(`/v1/bundles/${encodeURIComponent(jti)}`, {
      headers: { Accept: "application/json", Authorization: `Bearer ${adminToken.get()}` },
      credentials: "omit",
      cache: "no-store",
    });
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (!res.ok) {
      let problem = {};
      try {
        problem = JSON.parse(new TextDecoder().decode(bytes));
      } catch {
        /* not a problem document */
      }
      throw new ApiError(res.status, problem);
    }
    await takeBundle(bytes, `bundle of ${jti} (fetched from this server)`);
  } catch (e) {
    const hint = e instanceof ApiError && (e.status === 401 || e.status === 403) ? " Check the admin token." : "";
    notice($("bundle-status"), `Could not fetch the bundle of ${jti}: ${e.message}.${hint} Or run fiat bundle ${jti} -o bundle.json and drop the file.`, "bad");
  }
}

function fromHash() {
  const jti = decodeURIComponent(location.hash.slice(1));
  if (jti) fetchBundle(jti);
}

// -- wiring ----------------------------------------------------------------------------------
$("root-file").addEventListener("change", async (ev) => {
  const f = ev.target.files[0];
  if (f) await pin(await readFile(f), `uploaded ${f.name}`);
  if (bundleBytes) await run();
});
$("root-paste").addEventListener("click", async () => {
  const text = $("root-text").value;
  if (!text.trim()) return notice($("root-status"), "Paste a trust root first.", "bad");
  await pin(enc.encode(text), "pasted");
  if (bundleBytes) await run();
});
$("root-fetch").addEventListener("click", async () => {
  notice($("root-status"), "Fetching this server's trust root (once)…");
  try {
    const res = await fetch("/v1/trust/root", { credentials: "omit", cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    const claimed = res.headers.get("Fiat-Trust-Root-Fingerprint");
    const fp = `sha256:${await sha256Hex(bytes)}`;
    if (claimed && claimed !== fp) throw new Error(`the fingerprint header ${claimed} is not that of the bytes served (${fp})`);
    // Trust on first use: the server handing out the root is the one whose evidence is checked.
    await pin(bytes, "fetched from this server — trust on first use: compare this fingerprint with one from another channel (fiat trust-root export on a machine you trust) before relying on a verdict");
    if (bundleBytes) await run();
  } catch (e) {
    notice($("root-status"), `Could not fetch the trust root: ${e.message}`, "bad");
  }
});
$("root-clear").addEventListener("click", () => {
  rootBytes = null;
  localStorage.removeItem(STORE);
  notice($("root-status"), "No trust root pinned.");
  refresh();
});
$("bundle-file").addEventListener("change", async (ev) => {
  const f = ev.target.files[0];
  if (f) await takeBundle(await readFile(f), f.name);
});
const drop = $("drop");
drop.addEventListener("click", () => $("bundle-file").click());
drop.addEventListener("keydown", (ev) => {
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    $("bundle-file").click();
  }
});
drop.addEventListener("dragover", (ev) => {
  ev.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (ev) => {
  ev.preventDefault();
  drop.classList.remove("over");
  const f = ev.dataTransfer.files[0];
  if (f) await takeBundle(await readFile(f), f.name);
});
$("run").addEventListener("click", run);
$("token-save").addEventListener("click", () => {
  adminToken.set($("admin-token").value.trim());
  $("admin-token").value = "";
  $("token-box").hidden = true;
  fromHash();
});
window.addEventListener("hashchange", fromHash);

const stored = localStorage.getItem(STORE);
if (stored) pin(enc.encode(stored), "remembered from an earlier visit");
fromHash();
document.body.dataset.ready = "true";
