// The trust root (application/vnd.fiat.trust-root.v1+json, docs/formats.md): a port of
// fiat.verify.trust_root. Public keys only.

import { MalformedError, b64urlDecode, get, has, isDict, isInt, isStr, jwkThumbprint, loadsStrict, num, parseTime, repr, rfc3339 } from "./strict.js";
import { entityUid } from "./formats.js";
import { noteVerifier } from "./tlog.js";

export const MEDIA_TYPE = "application/vnd.fiat.trust-root.v1+json";
// -- a witness key's url (trust_root.check_witness_url), over a port of what it reads of Python's
// urllib.parse.urlsplit (3.11: scheme, netloc with its bracket and NFKC checks, query, fragment,
// port, hostname, username/password) and of ipaddress.ip_address for a bracketed host.
class PyValueError extends Error {}
const partition = (s, sep) => {
  const i = s.indexOf(sep);
  return i < 0 ? [s, "", ""] : [s.slice(0, i), sep, s.slice(i + sep.length)];
};
const rpartition = (s, sep) => {
  const i = s.lastIndexOf(sep);
  return i < 0 ? ["", "", s] : [s.slice(0, i), sep, s.slice(i + sep.length)];
};

/** ipaddress.IPv4Address's parse: four decimal octets, no leading zeros, each ≤ 255. */
function isIPv4(s) {
  const octets = s.split(".");
  if (!s || octets.length !== 4) return false;
  return octets.every((o) => /^[0-9]{1,3}$/.test(o) && !(o !== "0" && o[0] === "0") && Number(o) <= 255);
}

/** ipaddress.IPv6Address's parse (RFC 4291 §2.2 text forms, one "::", an IPv4 tail, a %scope). */
function isIPv6(s) {
  const [addr, sep, scope] = partition(s, "%");
  if (sep && (!scope || scope.includes("%"))) return false;
  if (!addr) return false;
  const parts = addr.split(":");
  if (parts.length < 3) return false;
  if (parts[parts.length - 1].includes(".")) {
    if (!isIPv4(parts.pop())) return false;
    parts.push("0", "0"); // two hextets, valid by construction
  }
  if (parts.length > 9) return false;
  let skip = null;
  for (let i = 1; i < parts.length - 1; i++) {
    if (!parts[i]) {
      if (skip !== null) return false;
      skip = i;
    }
  }
  let hi;
  let lo;
  if (skip !== null) {
    hi = skip;
    lo = parts.length - skip - 1;
    if (!parts[0] && --hi) return false;
    if (!parts[parts.length - 1] && --lo) return false;
    if (8 - (hi + lo) < 1) return false;
  } else {
    if (parts.length !== 8 || !parts[0] || !parts[parts.length - 1]) return false;
    hi = parts.length;
    lo = 0;
  }
  const hextets = [...parts.slice(0, hi), ...parts.slice(parts.length - lo)];
  return hextets.every((h) => /^[0-9A-Fa-f]{1,4}$/.test(h));
}

function urlsplit(url) {
  url = url.replace(/^[\x00-\x20]+/, "").replace(/[\t\r\n]/g, "");
  let scheme = "";
  let netloc = "";
  let query = "";
  let fragment = "";
  const i = url.indexOf(":");
  if (i > 0 && /^[A-Za-z]/.test(url) && /^[A-Za-z0-9+.-]+$/.test(url.slice(0, i))) {
    scheme = url.slice(0, i).toLowerCase();
    url = url.slice(i + 1);
  }
  if (url.startsWith("//")) {
    let delim = url.length;
    for (const c of "/?#") {
      const w = url.indexOf(c, 2);
      if (w >= 0) delim = Math.min(delim, w);
    }
    netloc = url.slice(2, delim);
    url = url.slice(delim);
    const open = netloc.includes("[");
    const close = netloc.includes("]");
    if (open !== close) throw new PyValueError("Invalid IPv6 URL");
    if (open && close) {
      const host = partition(partition(netloc, "[")[2], "]")[0];
      if (host.startsWith("v")) {
        if (!/^v[a-fA-F0-9]+\.[^\n]+$/.test(host)) throw new PyValueError("IPvFuture address is invalid");
      } else if (isIPv4(host)) {
        throw new PyValueError("An IPv4 address cannot be in brackets");
      } else if (!isIPv6(host)) {
        throw new PyValueError(`${repr(host)} does not appear to be an IPv4 or IPv6 address`);
      }
    }
  }
  if (url.includes("#")) [url, , fragment] = partition(url, "#");
  if (url.includes("?")) [url, , query] = partition(url, "?");
  if (netloc && /[^\x00-\x7f]/.test(netloc)) {
    // _checknetloc: characters like U+2100 that NFKC expands into URL delimiters
    const n = netloc.replace(/[@:#?]/g, "");
    const n2 = n.normalize("NFKC");
    if (n !== n2 && /[/?#@:]/.test(n2)) throw new PyValueError(`netloc '${netloc}' contains invalid characters under NFKC normalization`);
  }
  const [userinfo, haveInfo, hostinfo] = rpartition(netloc, "@");
  let username = null;
  let password = null;
  if (haveInfo) {
    const [u, havePassword, pw] = partition(userinfo, ":");
    username = u;
    password = havePassword ? pw : null;
  }
  let hostname;
  let port;
  const [, openBr, bracketed] = partition(hostinfo, "[");
  if (openBr) {
    const [h, , rest] = partition(bracketed, "]");
    hostname = h;
    port = partition(rest, ":")[2];
  } else {
    [hostname, , port] = partition(hostinfo, ":");
  }
  return { scheme, netloc, query, fragment, username, password, hostname, port: port || null };
}

/** trust_root.check_witness_url: an absolute http(s)://host[:port][/path] URL without query, fragment
 * or credentials, no spaces or control characters, at most 2048 characters (tlog-witness §HTTP Interface). */
function checkWitnessUrl(url, what) {
  if (!isStr(url) || [...url].length > 2048) throw new MalformedError(what, "a witness URL is a string of at most 2048 characters");
  const shown = repr([...url].slice(0, 80).join(""));
  let parts;
  try {
    parts = urlsplit(url);
    if (parts.port !== null) {
      if (!/^[0-9]+$/.test(parts.port)) throw new PyValueError(`Port could not be cast to integer value as ${repr(parts.port)}`);
      if (Number(parts.port) > 65535) throw new PyValueError("Port out of range 0-65535");
    }
  } catch (e) {
    if (e instanceof PyValueError) throw new MalformedError(what, `${shown} is not a URL: ${e.message}`);
    throw e;
  }
  if (!["http", "https"].includes(parts.scheme) || !parts.hostname) throw new MalformedError(what, `${shown} is not an http:// or https:// URL with a host`);
  if (url.includes("?") || url.includes("#") || parts.username !== null || parts.password !== null) {
    throw new MalformedError(what, `${shown} must not carry a query, a fragment or credentials`);
  }
  if (/[\x00-\x20\x7f]/.test(url)) throw new MalformedError(what, "a witness URL must not contain spaces or control characters");
  return url;
}
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
  if (url !== null) {
    if (role !== "witness") throw new MalformedError(what, `only witness keys have a url, not a ${role} key`);
    checkWitnessUrl(url, `${what} url`);
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
  const witnessKids = parsed.filter((k) => k.role === "witness").map((k) => k.kid);
  if (new Set(witnessKids).size !== witnessKids.length) {
    throw new MalformedError(what, "one witness key is listed twice: each witness needs its own key");
  }
  if (parsed.some((k) => k.role === "witness" && k.name === log.origin)) {
    throw new MalformedError(what, "a witness key is named like the log: its cosignatures would pose as the log's");
  }
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
