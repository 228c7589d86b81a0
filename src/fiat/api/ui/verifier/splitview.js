// Split-view proofs, in the browser: a port of fiat.verify.split_view and verifier.verify_split_view
// (docs/formats.md, "Split-view proofs"). Offline evidence that a log signed two checkpoints that
// cannot lie on one append-only history (RFC 9162 §2.1.4). Three named steps: split-view-format,
// split-view-signatures, split-view-inconsistency; the report is SplitViewResult.to_json().

import { LONE_SURROGATE, MalformedError, VerificationError, b64std, bytesEq, get, isDict, isStr, loadsStrict, repr, utf8Encode } from "./strict.js";
import { HASH_SIZE, noteVerifier, openWithAny, verifyConsistency } from "./tlog.js";

export const MEDIA_TYPE = "application/vnd.fiat.split-view-proof.v1+json";
export const STEPS = ["split-view-format", "split-view-signatures", "split-view-inconsistency"];
const MAX_SIZE = 1 << 20;
const MEMBERS = ["mediaType", "origin", "checkpoints", "consistency", "observedBy", "observedAt"];
const EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const hexOf = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

/** note.b64decode_strict, worded as it is. */
function b64Strict(text, what) {
  const shown = repr([...text].slice(0, 40).join(""));
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0 || text.replace(/=+$/, "").length % 4 === 1) {
    throw new MalformedError(what, `invalid base64: ${shown}`);
  }
  const bin = atob(text);
  const raw = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  if (b64std(raw) !== text) throw new MalformedError(what, `non-canonical base64: ${shown}`);
  return raw;
}

/** Whether a file names the split-view media type (cli.verify.is_split_view): UTF-8 JSON (no BOM)
 * whose top-level mediaType is it; a loose look, the proof's own parse is strict. */
export function isSplitView(data) {
  let v;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(data));
  } catch {
    return false;
  }
  return v !== null && typeof v === "object" && !Array.isArray(v) && v.mediaType === MEDIA_TYPE;
}

/** SplitViewProof.parse: step split-view-format, MalformedError otherwise. */
export function parseSplitView(data) {
  const what = "split-view proof";
  const v = loadsStrict(data, what, MAX_SIZE);
  if (!isDict(v) || get(v, "mediaType") !== MEDIA_TYPE) throw new MalformedError(what, `mediaType must be ${MEDIA_TYPE}`);
  const unknown = Object.keys(v).filter((k) => !MEMBERS.includes(k)).sort();
  if (unknown.length) throw new MalformedError(what, `unknown member ${repr(unknown[0])}`);
  const origin = get(v, "origin");
  const cps = get(v, "checkpoints");
  if (!isStr(origin) || !origin) throw new MalformedError(what, "origin must be the log's origin");
  if (!Array.isArray(cps) || cps.length !== 2 || !cps.every(isStr)) throw new MalformedError(what, "checkpoints must be a list of two signed notes");
  let oldRoot = null;
  let proof = [];
  const cons = get(v, "consistency", null);
  if (cons !== null) {
    const keys = isDict(cons) ? Object.keys(cons).sort() : [];
    if (!isDict(cons) || keys.length !== 2 || keys[0] !== "oldRoot" || keys[1] !== "proof") {
      throw new MalformedError(what, "consistency must hold exactly oldRoot and proof");
    }
    if (!isStr(cons.oldRoot) || !Array.isArray(cons.proof)) throw new MalformedError(what, "consistency.oldRoot is base64 and consistency.proof a list");
    oldRoot = b64Strict(cons.oldRoot, what);
    if (cons.proof.length > 64 || !cons.proof.every(isStr)) throw new MalformedError(what, "consistency.proof must be at most 64 base64 hashes");
    proof = cons.proof.map((h) => b64Strict(h, what));
    if (oldRoot.length !== HASH_SIZE || proof.some((h) => h.length !== HASH_SIZE)) throw new MalformedError(what, `hashes must be ${HASH_SIZE} bytes`);
  }
  const by = get(v, "observedBy", "");
  const at = get(v, "observedAt", "");
  if (!isStr(by) || !isStr(at)) throw new MalformedError(what, "observedBy and observedAt are strings");
  if ([cps[0], cps[1], origin, by, at].some((s) => LONE_SURROGATE.test(s))) {
    throw new MalformedError(what, "a string holds a lone UTF-16 surrogate (not Unicode text)");
  }
  return { origin, first: utf8Encode(cps[0]), second: utf8Encode(cps[1]), oldRoot, proof, observedBy: by, observedAt: at };
}

/** split_view.verify: steps 2 and 3 against the trust root's log keys. */
async function verifyProof(p, logKeys, maxSizes) {
  let step = "split-view-signatures";
  if (!logKeys.length) throw new VerificationError(step, "the trust root has no log key");
  if (logKeys.some((k) => k.name !== p.origin)) throw new VerificationError(step, `the proof is about ${repr(p.origin)}, not the trust root's log`);
  const opened = [];
  for (const [label, data] of [["the first", p.first], ["the second", p.second]]) {
    try {
      opened.push(await openWithAny(data, logKeys, maxSizes));
    } catch (e) {
      if (e instanceof MalformedError || e instanceof VerificationError) throw new VerificationError(step, `${label} checkpoint: ${e.message}`);
      throw e;
    }
  }
  const [a, b] = opened;
  step = "split-view-inconsistency";
  if (a.size > b.size) throw new VerificationError(step, "the first checkpoint must be the smaller tree");
  if ((a.size === 0n || a.size === b.size) && (p.oldRoot !== null || p.proof.length)) {
    throw new VerificationError(step, "consistency evidence is only for checkpoints of different sizes, the smaller one not empty");
  }
  if (a.size === b.size) {
    if (bytesEq(a.root, b.root)) throw new VerificationError(step, `both checkpoints have the same root for size ${a.size}: no split view`);
    return { a, b, summary: `two roots signed for tree size ${a.size}` };
  }
  if (a.size === 0n) {
    if (hexOf(a.root) === EMPTY_ROOT_HEX) throw new VerificationError(step, "the empty tree is consistent with every tree: no split view");
    return { a, b, summary: "a signed empty tree whose root is not the empty tree's" };
  }
  if (p.oldRoot === null) throw new VerificationError(step, "checkpoints of different sizes need consistency evidence (oldRoot, proof)");
  try {
    await verifyConsistency(a.size, b.size, p.oldRoot, b.root, p.proof);
  } catch (e) {
    if (e instanceof VerificationError) throw new VerificationError(step, `the consistency proof from size ${a.size} to ${b.size} does not verify: ${e.reason}`);
    throw e;
  }
  if (bytesEq(p.oldRoot, a.root)) throw new VerificationError(step, `checkpoint ${b.size} extends checkpoint ${a.size}: the two are consistent`);
  return { a, b, summary: `checkpoint ${b.size}'s history has another root at size ${a.size} than the signed checkpoint ${a.size}` };
}

/** verifier.verify_split_view against a parsed trust root: SplitViewResult.to_json(). */
export async function verifySplitView(data, root) {
  const out = {
    mediaType: MEDIA_TYPE,
    verified: false,
    proves: null,
    origin: null,
    summary: null,
    failedStep: null,
    checkpoints: [],
    observedBy: null,
    observedAt: null,
    steps: [],
  };
  const passed = { [STEPS[0]]: "well formed", [STEPS[1]]: "", [STEPS[2]]: "" };
  const finish = (failedAt, reason) => {
    const at = STEPS.indexOf(failedAt);
    out.steps = STEPS.slice(0, at).map((n) => ({ step: n, status: "pass", detail: passed[n] }));
    out.steps.push({ step: failedAt, status: "fail", detail: reason });
    for (const n of STEPS.slice(at + 1)) out.steps.push({ step: n, status: "skip", detail: "not checked: an earlier step failed" });
    out.failedStep = failedAt;
    return out;
  };
  let p;
  try {
    p = parseSplitView(data);
  } catch (e) {
    if (e instanceof MalformedError) return finish(STEPS[0], e.message);
    return finish(STEPS[0], `malformed split-view proof: unexpected structure (${e && e.name ? e.name : "Error"})`);
  }
  out.origin = p.origin;
  out.observedBy = p.observedBy || null;
  out.observedAt = p.observedAt || null;
  passed[STEPS[1]] = `both checkpoints signed by the log ${p.origin}`;
  const logs = root.byRole("log");
  let proven;
  try {
    const verifiers = await Promise.all(logs.map((k) => noteVerifier(root.logOrigin, k.publicKey)));
    proven = await verifyProof(p, verifiers, logs.map((k) => k.maxTreeSize));
  } catch (e) {
    if (e instanceof VerificationError) return finish(STEPS.includes(e.step) ? e.step : STEPS[1], e.reason);
    if (e instanceof MalformedError) return finish(STEPS[1], e.message);
    // Hostile input that slipped past a shape check must still fail closed, never crash.
    return finish(STEPS[1], `unexpected structure in the proof (${e && e.name ? e.name : "Error"})`);
  }
  out.checkpoints = [
    { size: Number(proven.a.size), root: b64std(proven.a.root) },
    { size: Number(proven.b.size), root: b64std(proven.b.root) },
  ];
  out.summary = proven.summary;
  passed[STEPS[2]] = proven.summary;
  out.steps = STEPS.map((n) => ({ step: n, status: "pass", detail: passed[n] }));
  out.verified = true;
  out.proves = "split-view";
  return out;
}
