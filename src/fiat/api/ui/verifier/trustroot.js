// The trust root (application/vnd.fiat.trust-root.v1+json, docs/formats.md): a port of
// fiat.verify.trust_root. Public keys only.

import { MalformedError, b64urlDecode, get, has, isDict, isInt, isStr, jwkThumbprint, loadsStrict, num, parseTime, repr, rfc3339 } from "./strict.js";
import { entityUid } from "./formats.js";
import { noteVerifier } from "./tlog.js";

export const MEDIA_TYPE = "application/vnd.fiat.trust-root.v1+json";
/** A witness key's ``url`` (trust_root.WITNESS_URL): http(s), printable ASCII without spaces, ≤ 2048 characters. */
const WITNESS_URL = /^https?:\/\/[!-~]{1,2040}$/;
export const ROLES = ["authority", "log", "runtime", "approver", "witness"];
export const MAX_LINEAGE_DEPTH = 32;
export const DEFAULT_APPROVAL_GROUP = "default";
const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function checkGroups(groups, what) {
  if (!Array.isArray(groups) || groups.length > 32) throw new MalformedError(what, "groups must be a list of at most 32 group names");
  for (const g of groups) {
    if (!isStr(g) || !GROUP_NAME.test(g)) throw new MalformedError(what, `group ${repr(g)} is not a group name (letters, digits, . _ -; at most 64)`);
  }
  if (new Set(groups).size !== groups.length) throw new MalformedError(what, "a group is listed twice");
  return groups;
}

class TrustedKey {
  constructor(f) {
    Object.assign(this, f);
  }
  validAt(t) {
    t = num(t);
    return this.validFrom <= t && (this.validUntil === null || t < this.validUntil);
  }
  period() {
    return `${rfc3339(this.validFrom)} .. ${this.validUntil === null ? "open" : rfc3339(this.validUntil)}`;
  }
  /** Who holds an approver key, in the principal's one spelling (``User::"alice"``). */
  get principal() {
    return entityUid(this.identity || `user:${this.name}`, "approver identity");
  }
  approvesGroup(group) {
    return this.role === "approver" && (group === DEFAULT_APPROVAL_GROUP || this.groups.includes(group));
  }
}

async function keyFromJson(v) {
  const what = "trust root key";
  if (!isDict(v)) throw new MalformedError(what, "expected an object");
  const role = get(v, "role");
  const name = get(v, "name");
  const kid = get(v, "kid");
  if (!ROLES.includes(role)) throw new MalformedError(what, `role ${repr(role)} is not one of ${ROLES.join(", ")}`);
  if (!isStr(name) || !name || !isStr(kid)) throw new MalformedError(what, "each key needs a kid and a non-empty name");
  if (get(v, "alg", "Ed25519") !== "Ed25519") throw new MalformedError(what, "only Ed25519 keys are supported");
  const publicKey = b64urlDecode(get(v, "publicKey", ""), what);
  if (publicKey.length !== 32) throw new MalformedError(what, "an Ed25519 public key is 32 bytes");
  if ((await jwkThumbprint(publicKey)) !== kid) throw new MalformedError(what, `kid ${repr(kid)} is not the RFC 7638 thumbprint of its public key`);
  const until = get(v, "validUntil", null);
  const maxSize = get(v, "maxTreeSize", null);
  if (maxSize !== null && (!isInt(maxSize) || maxSize < 0)) throw new MalformedError(what, "maxTreeSize must be a non-negative integer");
  const groups = checkGroups(get(v, "groups", []), what);
  const identity = get(v, "identity", null);
  if (role !== "approver" && (groups.length || identity !== null)) {
    throw new MalformedError(what, `only approver keys have groups and an identity, not a ${role} key`);
  }
  if (identity !== null) {
    if (!isStr(identity)) throw new MalformedError(what, "identity must be a principal, e.g. user:alice");
    entityUid(identity, `${what} identity`);
  }
  const url = get(v, "url", null);
  if (url !== null && (role !== "witness" || !isStr(url) || !WITNESS_URL.test(url))) {
    throw new MalformedError(what, "only a witness key has a url: its http(s) tlog-witness prefix");
  }
  return new TrustedKey({
    kid,
    role,
    name,
    publicKey,
    validFrom: parseTime(get(v, "validFrom"), what),
    validUntil: until === null ? null : parseTime(until, what),
    maxTreeSize: maxSize,
    groups,
    identity,
    url,
  });
}

/** Parse a trust root's bytes as TrustRoot.parse does (4 MiB, strict JSON); MalformedError otherwise. */
export async function parseTrustRoot(data) {
  const v = loadsStrict(data, "trust root", 4 << 20);
  const what = "trust root";
  if (!isDict(v)) throw new MalformedError(what, "expected a JSON object");
  if (get(v, "mediaType") !== MEDIA_TYPE) throw new MalformedError(what, `mediaType must be ${MEDIA_TYPE}`);
  const issuer = get(v, "issuer");
  const audience = get(v, "audience");
  const log = get(v, "log");
  const witnesses = has(v, "witnesses") ? v.witnesses : { quorum: 0 };
  const keys = get(v, "keys");
  if (!isStr(issuer) || !isStr(audience)) throw new MalformedError(what, "issuer and audience must be strings");
  if (!isDict(log) || !isStr(get(log, "origin"))) throw new MalformedError(what, "log.origin must be a string");
  if (!Array.isArray(keys) || keys.length > 10000) throw new MalformedError(what, "keys must be a list");
  const quorum = isDict(witnesses) ? get(witnesses, "quorum", null) : null;
  if (!isInt(quorum) || quorum < 0) throw new MalformedError(what, "witnesses.quorum must be a non-negative integer");
  const depth = get(v, "maxLineageDepth", MAX_LINEAGE_DEPTH);
  if (!isInt(depth) || !(depth >= 0 && depth <= MAX_LINEAGE_DEPTH)) {
    throw new MalformedError(
      what,
      `maxLineageDepth must be an integer from 0 to ${MAX_LINEAGE_DEPTH} (a bundle carries at most ${MAX_LINEAGE_DEPTH} ancestors); omit it for ${MAX_LINEAGE_DEPTH}`,
    );
  }
  const parsed = [];
  for (const k of keys) parsed.push(await keyFromJson(k));
  if (quorum > parsed.filter((k) => k.role === "witness").length) {
    throw new MalformedError(what, `a witness quorum of ${quorum} exceeds the number of witness keys`);
  }
  return {
    issuer,
    audience,
    logOrigin: log.origin,
    keys: parsed,
    witnessQuorum: Number(quorum),
    maxLineageDepth: Number(depth),
    find(kid, role = null) {
      return parsed.find((k) => k.kid === kid && (role === null || k.role === role)) || null;
    },
    byRole(role) {
      return parsed.filter((k) => k.role === role);
    },
    /** The log's note verifiers (TrustRoot.log_verifiers). */
    logVerifiers() {
      return Promise.all(this.byRole("log").map((k) => noteVerifier(this.logOrigin, k.publicKey)));
    },
  };
}
