// The offline verifier, in the browser: a faithful port of fiat.verify.verifier (the 15 named
// steps of ``fiat verify``, in order; each failure names its step; the steps after it are
// reported skipped) and fiat.verify.permit / .approvers. No I/O: nothing here touches the network.
//
// Entry: ``verifyBundle(bundleBytes, trustRootBytes, options)`` → the report ``fiat verify --json``
// prints: Report.to_json() for a parsed bundle, or {verified: false, failedStep: "trust-root" |
// "bundle-format", error} when an input does not parse (the CLI's exit 2).

import {
  MalformedError,
  VerificationError,
  ascii,
  bkey,
  canonicalize,
  get,
  has,
  isDict,
  isInt,
  isIntOrBool,
  isStr,
  jwkThumbprint,
  num,
  pyEq,
  repr,
  sha256Hex,
} from "./strict.js";
import {
  APPROVAL,
  DECISION,
  PREDICATE_TYPES,
  RECEIPT,
  REVOCATION,
  SIGNER_ROLE,
  checkScope,
  entityUid,
  isSha256Hex,
  publicKeyFromJwk,
  scopePairs,
  verifyJwsSignature,
} from "./formats.js";
import { checkInclusion, leafHash, noteVerifier, openWithAny, parseNote, verifiedCosigners, verifyConsistency } from "./tlog.js";
import { parseBundle } from "./bundle.js";
import { MAX_LINEAGE_DEPTH, parseTrustRoot } from "./trustroot.js";
import { MEDIA_TYPE as SPLIT_VIEW_MEDIA_TYPE, isSplitView, verifySplitView } from "./splitview.js";

export const STEPS = [
  "permit-signature",
  "permit-key-validity",
  "permit-claims",
  "action-binding",
  "runtime-key",
  "statement-signatures",
  "statement-digests",
  "decision",
  "approvals",
  "receipt",
  "environment-binding",
  "log-inclusion",
  "checkpoint-consistency",
  "witness-quorum",
  "lineage",
];
const ANCESTOR_STEPS = STEPS.slice(0, -1);
const OUTCOMES = ["completed", "failed", "halted"];
const MAX_GUARD_HEARTBEAT_MS = 60000;
const MIN_CHECK_INTERVAL = 1.0;
const HEARTBEAT_SLACK = 4;
const HEARTBEAT_MARGIN = 2;
const PERMIT_TYP = "fiat-permit+jwt";
const RENEWAL_GRACE = 5.0;

/** VerificationPolicy's defaults, as ``fiat verify`` uses them. */
export const DEFAULT_POLICY = Object.freeze({ requireReceipt: true, clockSkew: 5.0, staleness: 3.0, now: null });

const V = (step, reason) => new VerificationError(step, reason);
const fixed = (x, d = 0) => num(x).toFixed(d);

function time(pred, name, step) {
  try {
    return parseTimeOf(get(pred, name), `${name} time`);
  } catch (e) {
    if (e instanceof MalformedError) throw V(step, e.reason);
    throw e;
  }
}
import { parseTime as parseTimeOf } from "./strict.js";

// -- the permit rules (fiat.verify.permit) ---------------------------------------------------------
function numericDate(claims, name) {
  const v = get(claims, name);
  if (!isInt(v) || v < 0) throw V("permit-claims", `claim '${name}' must be a NumericDate (integer seconds)`);
  return v;
}

function digestOf(obj, where, step) {
  if (!isDict(obj) || !isSha256Hex(get(obj, "sha256"))) throw V(step, `${where} must be a digest set with a lower-case hex sha256`);
  return obj.sha256;
}

/** ``act.sub`` when ``act`` is present (RFC 8693 §4.1: the current actor), else ``sub``. */
export function permitPrincipal(c) {
  const act = get(c, "act");
  if (isDict(act) && isStr(get(act, "sub"))) return act.sub;
  const sub = get(c, "sub", "");
  return isStr(sub) ? sub : repr(sub);
}

function chainPrincipals(c) {
  const actors = [];
  let act = get(c, "act");
  while (isDict(act) && isStr(get(act, "sub")) && actors.length <= MAX_LINEAGE_DEPTH) {
    actors.push(act.sub);
    act = get(act, "act");
  }
  const sub = get(c, "sub");
  return isStr(sub) ? [...actors, sub] : actors;
}

function checkAct(act, step) {
  let depth = 0;
  while (act !== undefined && act !== null) {
    depth += 1;
    if (depth > MAX_LINEAGE_DEPTH + 1) throw V(step, `act nests deeper than ${MAX_LINEAGE_DEPTH + 1} actors`);
    if (!isDict(act) || !isStr(get(act, "sub")) || !act.sub) throw V(step, "act must be an object with a non-empty sub (RFC 8693 §4.1)");
    const extra = Object.keys(act).filter((k) => k !== "sub" && k !== "act").sort();
    if (extra.length) throw V(step, `act holds members other than sub and act: ${repr(extra)}`);
    act = get(act, "act");
  }
}

async function checkSignature(parsed, root) {
  const step = "permit-signature";
  const h = parsed.header;
  if (get(h, "typ") !== PERMIT_TYP) throw V(step, `typ must be '${PERMIT_TYP}', not ${repr(get(h, "typ"))}`);
  const kid = get(h, "kid");
  const key = isStr(kid) ? root.find(kid, "authority") : null;
  if (key === null) throw V(step, `kid ${repr(kid)} is not an authority key of the trust root`);
  await verifyJwsSignature(parsed, key.publicKey, step);
  return key;
}

function checkKeyValidity(authority, claims, usedAt = null) {
  const iat = numericDate(claims, "iat");
  if (!authority.validAt(iat)) {
    throw V("permit-key-validity", `authority key ${authority.kid} was not valid when the permit was issued (iat ${iat}; key valid ${authority.period()})`);
  }
  if (usedAt !== null && !authority.validAt(Math.max(num(iat), usedAt))) {
    throw V(
      "permit-key-validity",
      `authority key ${authority.kid} is not valid when the permit is used (at ${usedAt.toFixed(3)}; key valid ${authority.period()}): it was retired; ask the authority for a permit signed by its current key`,
    );
  }
}

function checkClaims(c, root) {
  const step = "permit-claims";
  if (get(c, "iss") !== root.issuer) throw V(step, `iss ${repr(get(c, "iss"))} is not the trust root's issuer ${repr(root.issuer)}`);
  const aud = get(c, "aud");
  if (!(aud === root.audience || (Array.isArray(aud) && aud.some((a) => a === root.audience)))) {
    throw V(step, `aud ${repr(aud)} does not include ${repr(root.audience)}`);
  }
  const iat = numericDate(c, "iat");
  const nbf = numericDate(c, "nbf");
  const exp = numericDate(c, "exp");
  if (!(nbf <= exp)) throw V(step, "nbf is after exp");
  if (iat > exp) throw V(step, "iat is after exp");
  for (const name of ["jti", "sub"]) {
    if (!isStr(get(c, name)) || !c[name]) throw V(step, `claim '${name}' must be a non-empty string`);
  }
  const cnf = get(c, "cnf");
  if (!isDict(cnf) || !has(cnf, "jwk")) throw V(step, "cnf must hold the runtime's public key as a JWK (RFC 7800 §3.2)");
  let cnfKey;
  try {
    cnfKey = publicKeyFromJwk(cnf.jwk, "cnf.jwk");
  } catch (e) {
    if (e instanceof MalformedError) throw V(step, e.reason);
    throw e;
  }
  const action = get(c, "action");
  if (!isDict(action) || !isStr(get(action, "name"))) throw V(step, "the action claim needs a name, a resource and a digest");
  const actionDigest = digestOf(get(action, "digest"), "action.digest", step);
  const policy = get(c, "policy");
  if (!isDict(policy)) throw V(step, "the policy claim must be an object");
  digestOf(get(policy, "digest"), "policy.digest", step);
  const environment = get(c, "environment");
  if (!isDict(environment)) throw V(step, "the environment claim must be an object with a digest");
  const environmentDigest = digestOf(get(environment, "digest"), "environment.digest", step);
  const constraints = get(c, "constraints", {});
  if (!isDict(constraints)) throw V(step, "constraints must be an object");
  const approvals = get(c, "approvals", []);
  if (!Array.isArray(approvals) || !approvals.every(isSha256Hex)) throw V(step, "approvals must be a list of sha256 hex digests");
  const parent = get(c, "parent", null);
  if (parent !== null && !isStr(parent)) throw V(step, "parent must be a permit id or null");
  if (has(c, "renews") && !isStr(c.renews)) throw V(step, "renews must be a permit id (present only on a renewal)");
  if (has(c, "scope")) {
    try {
      checkScope(c.scope, "the scope claim");
    } catch (e) {
      if (e instanceof MalformedError) throw V(step, e.message);
      throw e;
    }
  }
  if (has(c, "act")) {
    if (parent === null) throw V(step, "act is present on a permit without a parent (a root permit has no actor)");
    checkAct(c.act, step);
  }
  const delegation = get(c, "delegation");
  if (has(c, "delegation") && (!isDict(delegation) || !isIntOrBool(get(delegation, "depth")) || !Array.isArray(get(delegation, "ancestors")))) {
    throw V(step, "delegation must be an object with a depth and a list of ancestors");
  }
  if (isDict(delegation) && has(delegation, "parentHead") && !isStr(delegation.parentHead)) {
    throw V(step, "delegation.parentHead must be a permit id (the parent chain's live head)");
  }
  return { cnfKey, actionDigest, environmentDigest };
}

async function checkRuntimeKey(cnfKey, claims, root) {
  const kid = await jwkThumbprint(cnfKey);
  const key = root.find(kid, "runtime");
  if (key === null) throw V("runtime-key", `cnf key ${kid} is not a runtime key of the trust root`);
  const iat = numericDate(claims, "iat");
  if (!key.validAt(iat)) throw V("runtime-key", `runtime key ${key.kid} was not valid at iat (valid ${key.period()})`);
  return key;
}

// -- step 9's approver rules (fiat.verify.approvers) -------------------------------------------------
function requiredGroup(bundle) {
  const jti = get(bundle.permit.claims, "jti");
  const digest = bundle.permit.digest;
  for (const s of bundle.statements) {
    const p = s.statement.predicate;
    const permit = get(p, "permit");
    if (s.statement.predicateType !== DECISION || get(p, "decision") !== "allow" || !isDict(permit)) continue;
    if (!pyEq(get(permit, "jti"), jti) || !pyEq(get(permit, "digest"), { sha256: digest })) continue;
    const approval = get(p, "approval");
    const group = isDict(approval) ? get(approval, "group", null) : null;
    if (group !== null && !isStr(group)) throw V("approvals", "the allow decision's approval group is not a string");
    return group;
  }
  return null;
}

async function checkApprovers(bundle, root, approvals) {
  const STEP = "approvals";
  const group = requiredGroup(bundle);
  let principal;
  try {
    const p = get(bundle.actionRequest, "principal", "");
    principal = entityUid(isStr(p) ? p : repr(p), "principal");
  } catch (e) {
    if (e instanceof MalformedError) throw V(STEP, `the action request's principal: ${e.reason}`);
    throw e;
  }
  for (const s of approvals) {
    const label = `approval ${(await sha256Hex(s.envelope.entry())).slice(0, 16)}…`;
    let at;
    try {
      at = parseTimeOf(get(s.statement.predicate, "time"), "approval time");
    } catch (e) {
      if (e instanceof MalformedError) throw V(STEP, `${label}: ${e.reason}`);
      throw e;
    }
    const candidates = [];
    for (const sig of s.envelope.signatures) {
      const key = root.find(sig.keyid, "approver");
      if (key !== null && key.validAt(at)) candidates.push([sig, key]);
    }
    let signers;
    if (candidates.length === 1) signers = [candidates[0][1]];
    else {
      signers = [];
      for (const [sig, key] of candidates) if (await s.envelope.verifySignature(sig, key.publicKey)) signers.push(key);
    }
    if (!signers.length) throw V(STEP, `${label} is not signed by an approver key of the trust root`);
    const entitled = signers.filter((k) => group === null || k.approvesGroup(group));
    if (!entitled.length) {
      const held = signers.map((k) => `${k.name} (${k.groups.join(", ") || "no group"})`).join("; ");
      throw V(STEP, `${label} is signed by approver ${held}, not by an approver of group ${repr(group)} (the group the decision requires)`);
    }
    if (entitled.every((k) => k.principal === principal)) {
      throw V(STEP, `${label} is signed by ${entitled[0].name}, the principal who asked (${principal}): no self-approval`);
    }
  }
}

function chainText(principals) {
  const sub = principals[principals.length - 1];
  const actors = principals.slice(0, -1);
  let act = null;
  for (const p of [...actors].reverse()) act = act === null ? { sub: p } : { sub: p, act };
  return `sub ${sub}` + (act ? `, act ${repr(act)}` : "");
}

// -- the run --------------------------------------------------------------------------------------
class Run {
  constructor(bundle, root, policy) {
    this.bundle = bundle;
    this.root = root;
    this.policy = policy;
    this.claims = bundle.permit.claims;
    this.authority = null;
    this.cnfKey = new Uint8Array();
    this.containment = null;
    this.outcome = null;
    this.cnfKid = "";
    this.actionDigest = "";
    this.checkpoints = new Map(); // size (string) → Map(root key → root bytes)
    this.checkpointNotes = [];
    this.assurance = null;
  }

  // 1-3
  async "permit-signature"() {
    this.authority = await checkSignature(this.bundle.permit, this.root);
    return `signed by authority key ${this.authority.kid} (${get(this.bundle.permit.header, "alg")})`;
  }
  async "permit-key-validity"() {
    checkKeyValidity(this.authority, this.claims);
    return `key valid ${this.authority.period()}`;
  }
  async "permit-claims"() {
    const r = checkClaims(this.claims, this.root);
    this.cnfKey = r.cnfKey;
    this.actionDigest = r.actionDigest;
    this.cnfKid = await jwkThumbprint(this.cnfKey);
    const c = this.claims;
    const onBehalf = has(c, "act") ? ` on behalf of ${c.sub}` : "";
    return `jti ${c.jti}, principal ${permitPrincipal(c)}${onBehalf}, valid ${c.nbf}..${c.exp}`;
  }

  // 4
  async "action-binding"() {
    const req = this.bundle.actionRequest;
    const step = "action-binding";
    let digest;
    try {
      digest = await sha256Hex(canonicalize(req));
    } catch (e) {
      if (e instanceof MalformedError) throw V(step, `the action request cannot be canonicalized: ${e.reason}`);
      throw e;
    }
    if (digest !== this.actionDigest) throw V(step, "the permit's action digest is not the digest of this action request");
    const c = this.claims;
    for (const [claim, value, field] of [
      ["principal (act.sub, else sub)", permitPrincipal(c), "principal"],
      ["action.name", get(c.action, "name"), "action"],
      ["action.resource", get(c.action, "resource"), "resource"],
      ["parent", get(c, "parent"), "parent"],
    ]) {
      if (!pyEq(value, get(req, field))) throw V(step, `permit ${claim} ${repr(value)} differs from the request's ${field}`);
    }
    return `action digest ${digest.slice(0, 16)}… matches`;
  }

  // 5
  async "runtime-key"() {
    const key = await checkRuntimeKey(this.cnfKey, this.claims, this.root);
    return `runtime ${key.name} (${key.kid})`;
  }

  // 6
  async "statement-signatures"() {
    const step = "statement-signatures";
    const statements = this.bundle.statements;
    for (let i = 0; i < statements.length; i++) {
      const s = statements[i];
      const ptype = s.statement.predicateType;
      if (!PREDICATE_TYPES.includes(ptype)) throw V(step, `statement ${i} has an unknown predicate type ${repr(ptype)}`);
      const t = time(s.statement.predicate, ptype === RECEIPT ? "end" : "time", step);
      if (ptype === RECEIPT) {
        let ok = false;
        for (const sig of s.envelope.signatures) {
          if (sig.keyid === this.cnfKid && (await s.envelope.verifySignature(sig, this.cnfKey))) {
            ok = true;
            break;
          }
        }
        if (!ok) throw V(step, `the receipt (statement ${i}) is not signed by the permit's cnf key`);
        continue;
      }
      const role = SIGNER_ROLE[ptype];
      let ok = false;
      for (const sig of s.envelope.signatures) {
        const key = this.root.find(sig.keyid, role);
        if (key === null) continue;
        if (!(await s.envelope.verifySignature(sig, key.publicKey))) continue; // DSSE: only valid signatures by trusted keys count
        if (!key.validAt(t)) throw V(step, `statement ${i}: ${role} key ${key.kid} was not valid at ${get(s.statement.predicate, "time")}`);
        ok = true;
      }
      if (!ok) throw V(step, `statement ${i} (${ptype}) carries no signature by a trusted ${role} key`);
    }
    return `${statements.length} statements`;
  }

  // 7
  async "statement-digests"() {
    const step = "statement-digests";
    const permitDigest = this.bundle.permit.digest;
    this.bundle.statements.forEach((s, i) => {
      const ptype = s.statement.predicateType;
      if ((ptype === DECISION || ptype === APPROVAL) && s.statement.subject("action-request") !== this.actionDigest) {
        throw V(step, `statement ${i}: its action-request subject is not this action`);
      }
      if (ptype === RECEIPT && s.statement.subject("permit") !== permitDigest) throw V(step, `statement ${i}: the receipt's permit subject is not this permit`);
    });
    return "subjects match";
  }

  of(ptype) {
    return this.bundle.statements.filter((s) => s.statement.predicateType === ptype);
  }

  // 8
  async decision() {
    const jti = this.claims.jti;
    const digest = this.bundle.permit.digest;
    for (const s of this.of(DECISION)) {
      const p = s.statement.predicate;
      const permit = get(p, "permit");
      if (!isDict(permit)) continue;
      if (get(p, "decision") === "allow" && pyEq(get(permit, "jti"), jti) && pyEq(get(permit, "digest"), { sha256: digest })) {
        const reason = get(p, "reason", "");
        return `allowed at ${isStr(get(p, "time")) ? p.time : repr(get(p, "time"))}: ${isStr(reason) ? reason : repr(reason)}`.trim();
      }
    }
    throw V("decision", "no signed allow decision for this permit is in the bundle");
  }

  // 9
  async approvals() {
    const wanted = get(this.claims, "approvals", []);
    if (!wanted.length) return "none required";
    const have = new Map();
    for (const s of this.of(APPROVAL)) have.set(await sha256Hex(s.envelope.entry()), s);
    for (const d of wanted) {
      const s = have.get(d);
      if (s === undefined) throw V("approvals", `approval ${d.slice(0, 16)}… named by the permit is not in the bundle`);
      if (get(s.statement.predicate, "decision") !== "approve") throw V("approvals", `approval ${d.slice(0, 16)}… does not approve`);
    }
    await checkApprovers(this.bundle, this.root, wanted.map((d) => have.get(d)));
    return `${wanted.length} approval(s)`;
  }

  // 10
  async receipt() {
    const step = "receipt";
    const receipts = this.of(RECEIPT);
    if (!receipts.length) {
      if (this.policy.requireReceipt) throw V(step, "no execution receipt is in the bundle");
      return "not required";
    }
    if (receipts.length > 1) throw V(step, "more than one receipt for one permit");
    const p = receipts[0].statement.predicate;
    const permit = get(p, "permit");
    if (!isDict(permit) || !pyEq(get(permit, "jti"), this.claims.jti) || !pyEq(get(permit, "digest"), { sha256: this.bundle.permit.digest })) {
      throw V(step, "the receipt names another permit");
    }
    const start = time(p, "start", step);
    const end = time(p, "end", step);
    const skew = this.policy.clockSkew;
    if (!(num(this.claims.nbf) - skew <= start && start <= num(this.claims.exp) + skew)) {
      throw V(step, "the execution started outside the permit's validity window");
    }
    if (end < start) throw V(step, "the receipt ends before it starts");
    // permit-key-validity at use: the guard began acting on the permit at ``start``.
    checkKeyValidity(this.authority, this.claims, start - skew);
    const constraints = get(this.claims, "constraints", {});
    const maxDuration = get(constraints, "maxDuration");
    const began = has(p, "executionStart") ? time(p, "executionStart", step) : start;
    if (isIntOrBool(maxDuration) && end - began > num(maxDuration) + skew) {
      throw V(step, `the execution ran ${fixed(end - began)} s, beyond maxDuration ${maxDuration} s`);
    }
    const containment = get(p, "containment", null);
    if (containment !== null && !isStr(containment)) throw V(step, "the receipt's containment is not a string");
    const [outcome, exitCode, haltReason] = this.outcomeOf(p);
    await this.toolCallDigests(p);
    this.notRevoked(p, began, end, outcome);
    if (outcome !== "halted") {
      this.withinValidity(p, end, outcome);
      this.verificationCount(p, end - began);
    }
    this.containment = containment;
    this.outcome = [outcome, exitCode, haltReason];
    const said = outcome === "halted" ? `halted at ${haltReason}` : `${outcome} (exit ${exitCode === null ? "None" : exitCode})`;
    return `${said}; containment: ${containment || "not recorded"}`;
  }

  async toolCallDigests(p) {
    const step = "receipt";
    if (has(p, "argumentsDigest")) {
      const got = digestOf(p.argumentsDigest, "receipt argumentsDigest", step);
      let want;
      try {
        want = await sha256Hex(canonicalize(get(this.bundle.actionRequest, "context", null)));
      } catch (e) {
        if (e instanceof MalformedError) throw V(step, `the request's context cannot be canonicalized: ${e.reason}`);
        throw e;
      }
      if (got !== want) throw V(step, "the receipt's argumentsDigest is not the digest of the permitted request's arguments");
    }
    if (has(p, "resultDigest")) digestOf(p.resultDigest, "receipt resultDigest", step);
  }

  outcomeOf(p) {
    const step = "receipt";
    const outcome = get(p, "outcome");
    const exitCode = get(p, "exitCode", null);
    const haltReason = get(p, "haltReason", null);
    if (!OUTCOMES.includes(outcome)) throw V(step, `the receipt's outcome ${repr(outcome)} is not one of ${OUTCOMES.join(", ")}`);
    if (exitCode !== null && !isInt(exitCode)) throw V(step, "the receipt's exitCode is not an integer or null");
    if (haltReason !== null && !isStr(haltReason)) throw V(step, "the receipt's haltReason is not a string or null");
    if (outcome === "completed" && !pyEq(exitCode, 0)) throw V(step, `the receipt says completed with exit code ${repr(exitCode)}, not 0`);
    if (outcome === "halted" && !haltReason) throw V(step, "the receipt says halted but names no halt (haltReason)");
    return [outcome, exitCode, haltReason];
  }

  notRevoked(p, began, end, outcome) {
    const step = "receipt";
    const renewed = get(p, "renewedFrom", []);
    if (!Array.isArray(renewed) || !renewed.every(isStr)) throw V(step, "the receipt's renewedFrom is not a list of permit ids");
    const jti = this.claims.jti;
    const targets = new Map();
    const key = (k, t) => `${k}\u0000${t}`;
    const setDefault = (k, v) => {
      if (!targets.has(k)) targets.set(k, v);
    };
    for (const r of renewed) targets.set(key("permit", r), `the permit it renewed, ${r},`);
    const renews = get(this.claims, "renews");
    if (isStr(renews)) setDefault(key("permit", renews), `the permit it renewed, ${renews},`);
    for (const anc of this.bundle.ancestors) {
      for (const a of [get(anc.permit.claims, "jti"), get(anc.permit.claims, "renews")]) {
        if (isStr(a)) setDefault(key("permit", a), `its lineage ancestor ${a}`);
      }
    }
    targets.set(key("permit", jti), `the permit ${jti}`);
    targets.set(key("runtime", this.cnfKid), `its runtime ${this.cnfKid}`);
    for (const who of [...chainPrincipals(this.claims)].reverse()) {
      try {
        const label = who === permitPrincipal(this.claims) ? "its principal" : "its delegation chain's principal";
        targets.set(key("principal", entityUid(who, "principal")), `${label} ${who}`);
      } catch (e) {
        if (!(e instanceof MalformedError)) throw e;
      }
    }
    const bound = this.policy.staleness + this.policy.clockSkew;
    for (const s of this.of(REVOCATION)) {
      const r = s.statement.predicate;
      const kind = get(r, "kind");
      const target = get(r, "target");
      let what = isStr(kind) && isStr(target) ? targets.get(key(kind, target)) : undefined;
      if (what === undefined && kind === "permit" && isStr(target)) what = `the permit ${target} (carried in the bundle as covering this execution)`;
      if (what === undefined) continue;
      const at = time(r, "time", step);
      if (at + bound < began) {
        throw V(step, `${what} was revoked at ${get(r, "time")}, before the execution started at ${get(p, "executionStart", get(p, "start"))}: a revoked permit never runs`);
      }
      if (outcome !== "halted" && at + bound < end) {
        throw V(
          step,
          `${what} was revoked at ${get(r, "time")}, yet the execution ${outcome} at ${get(p, "end")} without halting (a guard halts within ${fixed(bound)} s of a revocation: staleness ${fixed(this.policy.staleness)} s + clock skew ${fixed(this.policy.clockSkew)} s)`,
        );
      }
    }
  }

  withinValidity(p, end, outcome) {
    const exp = num(this.claims.exp);
    const skew = this.policy.clockSkew;
    if (end > exp + skew) {
      throw V(
        "receipt",
        `the execution ${outcome} at ${get(p, "end")}, ${fixed(end - exp)} s after the permit chain expired (exp ${this.claims.exp}; clock skew ${fixed(skew)} s): a guard halts an action when its permit expires`,
      );
    }
  }

  verificationCount(p, duration) {
    const step = "receipt";
    const v = get(p, "verifications");
    const count = isDict(v) ? get(v, "count") : null;
    if (!isInt(count) || count < 0) throw V(step, "the receipt's verifications.count is not a non-negative integer");
    const permitHb = get(get(this.claims, "constraints", {}), "heartbeatIntervalMs");
    const receiptHb = get(p, "heartbeatMs", null);
    if (receiptHb !== null && (!isInt(receiptHb) || !(receiptHb >= 10 && receiptHb <= 60000))) {
      throw V(step, "the receipt's heartbeatMs is not an integer from 10 to 60000");
    }
    let heartbeatMs;
    let source;
    if (isInt(permitHb) && permitHb > 0) [heartbeatMs, source] = [permitHb, "the permit's heartbeatIntervalMs"];
    else if (receiptHb !== null) [heartbeatMs, source] = [receiptHb, "the receipt's heartbeatMs"];
    else [heartbeatMs, source] = [MAX_GUARD_HEARTBEAT_MS, "none recorded: the longest a guard accepts"];
    const interval = Math.max(num(heartbeatMs) / 1000, MIN_CHECK_INTERVAL) * HEARTBEAT_SLACK;
    const required = Math.floor(duration / interval) - HEARTBEAT_MARGIN;
    if (count < required) {
      throw V(
        step,
        `the receipt counts ${count} verifications over ${fixed(duration)} s; a guard with a ${heartbeatMs} ms heartbeat (${source}) records at least ${required} (one per ${fixed(interval)} s, less ${HEARTBEAT_MARGIN})`,
      );
    }
  }

  // 11
  async "environment-binding"() {
    const receipts = this.of(RECEIPT);
    if (!receipts.length) return "no receipt to bind";
    const expected = this.claims.environment.digest.sha256;
    const measurements = get(receipts[0].statement.predicate, "measurements");
    const start = isDict(measurements) ? get(measurements, "start") : null;
    if (!isDict(start)) throw V("environment-binding", "the receipt has no start measurement");
    const got = digestOf(get(start, "digest"), "receipt measurements.start.digest", "environment-binding");
    if (got !== expected) throw V("environment-binding", "the measured environment differs from the permitted one");
    return `environment ${expected.slice(0, 16)}…`;
  }

  // 12
  async "log-inclusion"() {
    const verifiers = await this.root.logVerifiers();
    if (!verifiers.length) throw V("log-inclusion", "the trust root has no log key");
    const entries = [["permit", ascii(this.bundle.permit.token), this.bundle.permitProof]];
    this.bundle.statements.forEach((s, i) => entries.push([`statement ${i}`, s.envelope.entry(), s.tlogProof]));
    this.bundle.renewals.forEach((r, i) => entries.push([`renewal ${i} (${get(r.permit.claims, "jti")})`, ascii(r.permit.token), r.tlogProof]));
    const opened = new Map(); // each distinct checkpoint is verified once
    for (const [label, entry, proof] of entries) {
      const k = bkey(proof.checkpoint);
      let cp = opened.get(k);
      if (cp === undefined) {
        cp = await this.openCheckpoint(proof.checkpoint, label);
        opened.set(k, cp);
        const size = String(cp.size);
        if (!this.checkpoints.has(size)) this.checkpoints.set(size, new Map());
        this.checkpoints.get(size).set(bkey(cp.root), cp.root);
        this.checkpointNotes.push(proof.checkpoint);
      }
      try {
        await checkInclusion(proof, await leafHash(entry), cp);
      } catch (e) {
        if (e instanceof VerificationError) throw V("log-inclusion", `${label}: ${e.message}`);
        throw e;
      }
    }
    return `${entries.length} entries in ${this.root.logOrigin}`;
  }

  async openCheckpoint(data, label) {
    const keys = this.root.byRole("log");
    const verifiers = [];
    for (const k of keys) verifiers.push(await noteVerifier(this.root.logOrigin, k.publicKey));
    try {
      return await openWithAny(data, verifiers, keys.map((k) => k.maxTreeSize));
    } catch (e) {
      if (e instanceof VerificationError || e instanceof MalformedError) throw V("log-inclusion", `${label}: checkpoint: ${e.message}`);
      throw e;
    }
  }

  // 13
  async "checkpoint-consistency"() {
    const step = "checkpoint-consistency";
    for (const [size, roots] of this.checkpoints) {
      if (roots.size > 1) throw V(step, `split view: two different roots for tree size ${size}`);
    }
    const sizes = [...this.checkpoints.keys()].map(BigInt).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const proofs = new Map();
    for (const c of this.bundle.consistency) proofs.set(`${c.oldSize}/${c.newSize}`, c.proof);
    const rootOf = (size) => [...this.checkpoints.get(String(size)).values()][0];
    for (let i = 0; i + 1 < sizes.length; i++) {
      const [old, neu] = [sizes[i], sizes[i + 1]];
      const proof = proofs.get(`${old}/${neu}`);
      if (proof === undefined) throw V(step, `no consistency proof from size ${old} to ${neu} in the bundle`);
      try {
        await verifyConsistency(old, neu, rootOf(old), rootOf(neu), proof);
      } catch (e) {
        if (e instanceof VerificationError) throw V(step, `${old} → ${neu}: ${e.reason}`);
        throw e;
      }
    }
    return `${sizes.length} checkpoint(s) on one history`;
  }

  // 14
  /** The assurance level (verifier.Assurance), and the trust root's quorum on every checkpoint. */
  async "witness-quorum"() {
    const step = "witness-quorum";
    const quorum = this.root.witnessQuorum;
    const keys = this.root.byRole("witness");
    const names = new Set(keys.map((w) => w.name));
    const now = this.policy.now === undefined || this.policy.now === null ? Date.now() / 1000 : this.policy.now;
    let least = null;
    for (const data of this.checkpointNotes) {
      let parsed;
      try {
        parsed = parseNote(data);
      } catch (e) {
        if (e instanceof MalformedError) throw V(step, e.reason);
        throw e;
      }
      const counted = new Set();
      const future = new Set();
      for (const w of keys) {
        for (const [, ts] of await verifiedCosigners(parsed, [[w.name, w.publicKey]])) {
          // tlog-cosignature: verifiers MAY reject cosignatures with timestamps in the future.
          if (ts > now + this.policy.clockSkew) future.add(w.name);
          else if (w.validAt(ts)) counted.add(w.name);
        }
      }
      least = least === null ? counted.size : Math.min(least, counted.size);
      if (counted.size < quorum) {
        this.assurance = assurance(least, names.size, quorum);
        const ahead = [...future].filter((n) => !counted.has(n)).length;
        const noteFuture = ahead ? ` (${ahead} more dated in the future beyond the clock skew, not counted)` : "";
        throw V(step, `a checkpoint has ${counted.size} valid witness cosignatures; ${quorum} required${noteFuture}`);
      }
    }
    this.assurance = assurance(least || 0, names.size, quorum);
    if (quorum === 0) return `no quorum required; ${this.assurance.text}`;
    return `≥ ${quorum} cosignatures on every checkpoint; ${this.assurance.text}`;
  }

  // 15
  async lineage() {
    const step = "lineage";
    const parent = get(this.claims, "parent", null);
    const ancestors = this.bundle.ancestors;
    if (parent === null) {
      if (ancestors.length) throw V(step, "the permit has no parent but the bundle carries ancestors");
      return "root execution";
    }
    if (!ancestors.length) throw V(step, `the permit descends from ${parent} but the bundle has no ancestors`);
    const cap = this.root.maxLineageDepth;
    if (ancestors.length > cap) throw V(step, `the lineage is ${ancestors.length} ancestors deep; the trust root accepts at most ${cap} (maxLineageDepth)`);
    const own = this.assurance;
    const policy = { ...this.policy, requireReceipt: false };
    const seen = new Set([this.claims.jti]);
    let expected = parent;
    for (let depth = 0; depth < ancestors.length; depth++) {
      const anc = ancestors[depth];
      const jti = get(anc.permit.claims, "jti");
      if (!pyEq(jti, expected)) throw V(step, `ancestor ${depth} is not the parent permit ${expected}`);
      if (seen.has(jti)) throw V(step, `the lineage loops: ${jti} appears twice`);
      seen.add(jti);
      await this.renewalPermits(anc);
      // Verified once, on its own: its link to its parent is the next turn of this walk.
      const result = await runSteps({ ...anc, ancestors: [] }, this.root, policy, ANCESTOR_STEPS);
      const f = result.steps.find((s) => s.status === "fail");
      if (f) throw V(step, `ancestor ${expected} fails at ${f.step}: ${f.detail}`);
      if (result.assurance !== null && this.assurance !== null) {
        // The least over the whole bundle: an ancestor's checkpoints count too.
        this.assurance = assurance(Math.min(this.assurance.witnessed, result.assurance.witnessed), this.assurance.witnesses, this.assurance.quorum);
      }
      expected = get(anc.permit.claims, "parent", null);
    }
    if (expected !== null) throw V(step, `the lineage stops at ${expected}, whose permit is not in the bundle`);
    await this.links();
    const lowered = own !== null && this.assurance !== null && this.assurance.witnessed < own.witnessed ? `; with its ancestors' checkpoints, ${this.assurance.text}` : "";
    return `${ancestors.length} ancestor(s); every link attenuates its parent${lowered}`;
  }

  async links() {
    const step = "lineage";
    const chain = [this.claims, ...this.bundle.ancestors.map((a) => a.permit.claims)];
    const revoked = new Map();
    for (const part of [this.bundle, ...this.bundle.ancestors]) {
      for (const s of part.statements) {
        if (s.statement.predicateType !== REVOCATION) continue;
        const r = s.statement.predicate;
        const kind = get(r, "kind");
        const target = get(r, "target");
        if (isStr(kind) && isStr(target)) {
          const at = time(r, "time", step);
          const k = `${kind}\u0000${target}`;
          revoked.set(k, revoked.has(k) ? Math.min(at, revoked.get(k)) : at);
        }
      }
    }
    // The earliest revocation covering each ancestor: its own, or any further up.
    const covering = new Array(chain.length).fill(null);
    let above = null;
    for (let k = chain.length - 1; k > 0; k--) {
      const c = chain[k];
      const targets = [["permit", get(c, "jti")], ["permit", get(c, "renews")]];
      try {
        targets.push(["principal", entityUid(permitPrincipal(c), "principal")]);
      } catch (e) {
        if (!(e instanceof MalformedError)) throw e;
      }
      for (const [kind, target] of targets) {
        const when = isStr(target) ? revoked.get(`${kind}\u0000${target}`) : undefined;
        if (when !== undefined && (above === null || when < above[0])) above = [when, `the ${kind} ${target}`];
      }
      covering[k] = above;
    }
    const principals = chain.map(chainPrincipals);
    for (let k = 0; k + 1 < chain.length; k++) {
      const child = chain[k];
      const par = chain[k + 1];
      const name = child.jti;
      const pname = par.jti;
      const iat = child.iat;
      const exp = child.exp;
      const head = await this.head(child, par, this.bundle.ancestors[k]);
      const window = head === par ? pname : `${pname}'s renewal chain head ${head.jti}`;
      if (!(head.nbf <= iat && iat < head.exp)) {
        throw V(step, `${name} was issued at ${iat}, when its parent ${window} was not valid (${head.nbf}..${head.exp}): a child needs a live parent`);
      }
      if (exp > head.exp) throw V(step, `${name} expires at ${exp}, after its parent ${window} (exp ${head.exp}): a child never outlives it`);
      const scope = get(par, "scope");
      if (Array.isArray(scope)) {
        const allowed = scopePairs(scope);
        const action = child.action;
        let pair;
        try {
          pair = [get(action, "name"), entityUid(get(action, "resource"), "resource")];
        } catch (e) {
          if (e instanceof MalformedError) throw V(step, `${name}: ${e.reason}`);
          throw e;
        }
        if (!allowed.has(`${pair[0]}\u0000${pair[1]}`)) throw V(step, `${name} permits ${pair[0]} on ${pair[1]}, outside the scope of its parent ${pname}`);
        if (!Array.isArray(get(child, "scope"))) {
          throw V(step, `${name} has no scope though its parent ${pname} has one: a scope binds every descendant`);
        }
        const wider = [...scopePairs(child.scope)].filter((x) => !allowed.has(x)).sort();
        if (wider.length) {
          const [a, res] = wider[0].split("\u0000");
          throw V(step, `${name}'s scope is wider than its parent ${pname}'s: ${a} on ${res} is not in it`);
        }
      }
      if (has(child, "act") || has(child, "delegation")) {
        const want = [permitPrincipal(child), ...principals[k + 1]];
        if (!pyEq(principals[k], want)) {
          throw V(
            step,
            `${name}'s act chain (RFC 8693 §4.1) is ${chainText(principals[k])}; its lineage says ${chainText(want)} (sub the root's principal, each actor since nested in act)`,
          );
        }
      }
      const hit = covering[k + 1];
      if (hit !== null && hit[0] + 1.0 <= num(iat)) {
        throw V(step, `${name} was issued at ${iat}, after ${hit[1]} covering its parent ${pname} was revoked (at ${hit[0].toFixed(3)}): a revoked parent delegates nothing`);
      }
    }
  }

  async head(child, par, anc) {
    const step = "lineage";
    const name = child.jti;
    const pname = par.jti;
    const delegation = get(child, "delegation");
    const wanted = isDict(delegation) ? get(delegation, "parentHead", null) : null;
    if (wanted === null) {
      if (anc.renewals.length) throw V(step, `the bundle carries renewals of ${pname}, but ${name} names no parentHead`);
      return par;
    }
    const digest = par.action.digest;
    const cnf = await jwkThumbprint(cnfOf(par));
    let prev = par;
    const seen = new Set([pname]);
    for (let i = 0; i < anc.renewals.length; i++) {
      const c = anc.renewals[i].permit.claims;
      const rname = get(c, "jti");
      const what = `renewal ${i} of ${pname} (${rname})`;
      if (!pyEq(get(c, "renews"), prev.jti)) {
        throw V(step, `${wanted}, the parentHead ${name} names, is not reachable from ${pname}: ${what} renews ${repr(get(c, "renews"))}, not ${prev.jti} (a renewal link is missing)`);
      }
      if (seen.has(rname)) throw V(step, `the renewal chain of ${pname} loops: ${rname} appears twice`);
      seen.add(rname);
      if (!pyEq(c.action.digest, digest) || !pyEq(get(c, "parent"), get(par, "parent"))) {
        throw V(step, `${what} permits another action (action digest or parent differs)`);
      }
      if ((await jwkThumbprint(cnfOf(c))) !== cnf) throw V(step, `${what} is bound to another runtime key (cnf) than ${pname}`);
      if (!(prev.nbf <= c.iat && num(c.iat) <= num(prev.exp) + RENEWAL_GRACE)) {
        throw V(step, `${what} was issued at ${c.iat}, outside its predecessor's ${prev.nbf}..${prev.exp} (+${RENEWAL_GRACE.toFixed(0)} s grace): a renewal extends a live permit`);
      }
      prev = c;
    }
    if (!pyEq(prev.jti, wanted)) {
      throw V(
        step,
        `${wanted}, the parentHead ${name} names, is not reachable from ${pname} through the renewals the bundle carries (they end at ${prev.jti}): not a permit of its parent's renewal chain`,
      );
    }
    const cap = isDict(delegation) ? get(delegation, "parentExp", null) : null;
    if (cap !== null && !pyEq(cap, prev.exp)) throw V(step, `${name}'s parentExp ${repr(cap)} is not the exp of its parentHead (${prev.exp})`);
    return prev;
  }

  async renewalPermits(anc) {
    const pname = get(anc.permit.claims, "jti");
    for (let i = 0; i < anc.renewals.length; i++) {
      const r = anc.renewals[i];
      try {
        const key = await checkSignature(r.permit, this.root);
        checkKeyValidity(key, r.permit.claims);
        checkClaims(r.permit.claims, this.root);
      } catch (e) {
        if (e instanceof VerificationError) {
          throw V("lineage", `renewal ${i} of ${pname} (${get(r.permit.claims, "jti")}) fails at ${e.step}: ${e.reason}`);
        }
        throw e;
      }
    }
  }
}

/** verifier.Assurance.to_json(): the least number of trust-root witnesses cosigning each checkpoint. */
function assurance(witnessed, witnesses, quorum) {
  return {
    level: witnessed > 0 ? "witnessed" : "log",
    witnessed,
    witnesses,
    quorum,
    text: witnessed === 0 ? "signed by the log" : `witnessed by ${witnessed} of ${witnesses}`,
  };
}

function cnfOf(claims) {
  return publicKeyFromJwk(claims.cnf.jwk, "cnf");
}

async function runSteps(bundle, root, policy, steps) {
  const run = new Run(bundle, root, policy);
  const jti = get(bundle.permit.claims, "jti");
  const out = { verified: false, permit: isStr(jti) ? jti : null, failedStep: null, containment: null, outcome: null, exitCode: null, haltReason: null, assurance: null, steps: [] };
  let failed = false;
  for (const name of steps) {
    if (failed) {
      out.steps.push({ step: name, status: "skip", detail: "not checked: an earlier step failed" });
      continue;
    }
    try {
      const detail = await run[name]();
      out.steps.push({ step: name, status: "pass", detail });
    } catch (e) {
      let detail;
      if (e instanceof VerificationError) detail = e.step === name ? e.reason : e.message;
      else if (e instanceof MalformedError) detail = e.message;
      // Hostile input that slipped past a shape check must still fail closed, never crash.
      else detail = `unexpected structure in the bundle (${e && e.name ? e.name : "Error"})`;
      out.steps.push({ step: name, status: "fail", detail });
      out.failedStep = name;
      failed = true;
    }
  }
  out.verified = out.steps.length > 0 && out.steps.every((s) => s.status === "pass");
  out.containment = run.containment;
  out.assurance = run.assurance;
  if (run.outcome !== null) [out.outcome, out.exitCode, out.haltReason] = run.outcome;
  if (typeof out.exitCode === "bigint") out.exitCode = Number(out.exitCode);
  return out;
}

/**
 * Verify a bundle's bytes against a trust root's bytes, offline, as ``fiat verify --json`` does.
 * Returns its report: Report.to_json() (exit 0/1), or, for input that does not parse,
 * ``{verified: false, failedStep: "trust-root" | "bundle-format", error}`` (exit 2).
 * ``options``: ``clockSkew``, ``staleness``, ``requireReceipt`` (VerificationPolicy; the CLI's defaults).
 */
export async function verifyBundle(bundleBytes, trustRootBytes, options = {}) {
  const policy = { ...DEFAULT_POLICY, ...options };
  let root;
  try {
    root = await parseTrustRoot(trustRootBytes);
  } catch (e) {
    if (e instanceof MalformedError) return { verified: false, failedStep: "trust-root", error: e.message };
    return { verified: false, failedStep: "trust-root", error: `malformed trust root: unexpected structure (${e.name})` };
  }
  // A split-view proof is recognised by its mediaType, as `fiat verify` does (cli.verify.is_split_view).
  if (isSplitView(bundleBytes)) return verifySplitView(bundleBytes, root);
  let bundle;
  try {
    bundle = await parseBundle(bundleBytes);
  } catch (e) {
    if (e instanceof MalformedError) return { verified: false, failedStep: "bundle-format", error: e.message };
    return { verified: false, failedStep: "bundle-format", error: `malformed bundle: unexpected structure (${e.name})` };
  }
  return runSteps(bundle, root, policy, STEPS);
}

/** The exit status ``fiat verify`` gives this report: 0 verified (a split view proven), 1 a step
 * failed, 2 unreadable input (a split-view proof failing split-view-format included). */
export const exitCodeOf = (report) =>
  report.verified ? 0 : !report.steps || (report.mediaType === SPLIT_VIEW_MEDIA_TYPE && report.failedStep === "split-view-format") ? 2 : 1;
