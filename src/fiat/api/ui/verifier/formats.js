// Compact JWS (RFC 7515, RFC 8037), DSSE envelopes, in-toto statements and the action rules:
// a port of fiat.formats.jws, .dsse, .statement and .action (verification side only).

import {
  MalformedError,
  VerificationError,
  ascii,
  b64std,
  b64stdDecode,
  b64urlDecode,
  canonicalize,
  concat,
  ed25519Verify,
  get,
  has,
  isDict,
  isStr,
  jsonString,
  loadsStrict,
  repr,
  sha256Hex,
  utf8Encode,
} from "./strict.js";

// -- JWS ------------------------------------------------------------------------------------------
export const ACCEPTED_ALGS = ["EdDSA", "Ed25519"]; // RFC 8037 §3.1, RFC 9864
const MAX_TOKEN = 64 * 1024;

/** Split and decode a compact JWS (RFC 7515 §7.1) without verifying it (jws.parse). */
export async function parseJws(token) {
  const what = "JWS";
  if (!isStr(token) || token.length > MAX_TOKEN) throw new MalformedError(what, "expected a compact JWS string of at most 64 KiB");
  const parts = token.split(".");
  if (parts.length !== 3) throw new MalformedError(what, "a compact JWS has three dot-separated parts");
  const header = loadsStrict(b64urlDecode(parts[0], "JWS header"), "JWS header");
  const claims = loadsStrict(b64urlDecode(parts[1], "JWS payload"), "JWS payload");
  if (!isDict(header) || !isDict(claims)) throw new MalformedError(what, "the header and the payload must be JSON objects");
  const signature = b64urlDecode(parts[2], "JWS signature");
  // The token passed base64url checks: it is ASCII. Evidence names it by SHA-256 of its bytes.
  return { header, claims, signingInput: ascii(`${parts[0]}.${parts[1]}`), signature, token, digest: await sha256Hex(ascii(token)) };
}

/** RFC 7515 §5.2 for one Ed25519 key (jws.verify_signature). */
export async function verifyJwsSignature(jws, publicKey, step) {
  const alg = get(jws.header, "alg");
  if (!ACCEPTED_ALGS.includes(alg)) throw new VerificationError(step, `alg ${repr(alg)} is not accepted (only EdDSA or Ed25519)`);
  if (has(jws.header, "crit")) throw new VerificationError(step, "the JWS header has critical extensions Fiat does not understand");
  if (jws.signature.length !== 64) throw new VerificationError(step, "an Ed25519 signature is 64 bytes");
  if (!(await ed25519Verify(publicKey, jws.signature, jws.signingInput))) throw new VerificationError(step, "the JWS signature does not verify");
}

/** An Ed25519 OKP JWK (RFC 8037 §2) → its 32 public key bytes (jws.public_key_from_jwk). */
export function publicKeyFromJwk(value, what) {
  if (!isDict(value) || get(value, "kty") !== "OKP" || get(value, "crv") !== "Ed25519") {
    throw new MalformedError(what, "expected an Ed25519 OKP JWK (RFC 8037 §2)");
  }
  const raw = b64urlDecode(get(value, "x", ""), what);
  if (raw.length !== 32) throw new MalformedError(what, "an Ed25519 public key is 32 bytes");
  return raw;
}

// -- DSSE (https://github.com/secure-systems-lab/dsse, protocol v1) -------------------------------
export const IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json";

/** PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body. */
export function pae(payloadType, payload) {
  const t = utf8Encode(payloadType);
  return concat(ascii(`DSSEv1 ${t.length} `), t, ascii(` ${payload.length} `), payload);
}

/** A DSSE envelope from its JSON form (dsse.Envelope.from_json); ``entry()`` is its RFC 8785 bytes. */
export function envelopeFromJson(value) {
  const what = "DSSE envelope";
  if (!isDict(value)) throw new MalformedError(what, "expected a JSON object");
  const unknown = Object.keys(value).filter((k) => !["payload", "payloadType", "signatures"].includes(k));
  if (unknown.length) throw new MalformedError(what, `unknown members ${repr(unknown.sort())}`);
  const ptype = get(value, "payloadType");
  const payload = get(value, "payload");
  const sigs = get(value, "signatures");
  if (!isStr(ptype) || !isStr(payload) || !Array.isArray(sigs) || !sigs.length) {
    throw new MalformedError(what, "needs payloadType (string), payload (base64) and at least one signature");
  }
  if (sigs.length > 16) throw new MalformedError(what, "more than 16 signatures");
  const signatures = sigs.map((s) => {
    if (!isDict(s) || !isStr(get(s, "sig")) || !isStr(get(s, "keyid", ""))) {
      throw new MalformedError(what, "each signature needs a base64 'sig' and a string 'keyid'");
    }
    return { keyid: get(s, "keyid", ""), sig: b64stdDecode(s.sig, what) };
  });
  return makeEnvelope(ptype, b64stdDecode(payload, what), signatures);
}

function makeEnvelope(payloadType, payload, signatures) {
  let entry = null;
  let message = null;
  return {
    payloadType,
    payload,
    signatures,
    /** The canonical (RFC 8785) bytes: what is logged and hashed (dsse.Envelope.encode). */
    entry() {
      if (entry === null) {
        const sigs = signatures.map((s) => `{"keyid":${jsonString(s.keyid)},"sig":"${b64std(s.sig)}"}`).join(",");
        const text = `{"payload":"${b64std(payload)}","payloadType":${jsonString(payloadType)},"signatures":[${sigs}]}`;
        entry = utf8Encode(text); // a lone surrogate in a keyid is refused, as RFC 8785 refuses it
      }
      return entry;
    },
    /** True if this one signature verifies under ``publicKey``. */
    async verifySignature(sig, publicKey) {
      try {
        if (message === null) message = pae(payloadType, payload);
        return await ed25519Verify(publicKey, sig.sig, message);
      } catch {
        return false;
      }
    },
  };
}

// -- in-toto Statement v1 ----------------------------------------------------------------------------
export const STATEMENT_TYPE = "https://in-toto.io/Statement/v1";
const BASE = "https://fiat.local/predicate/";
export const DECISION = BASE + "decision/v1";
export const APPROVAL = BASE + "approval/v1";
export const REVOCATION = BASE + "revocation/v1";
export const RECEIPT = BASE + "receipt/v1";
export const POLICY = BASE + "policy/v1";
export const KEY_ROTATION = BASE + "key-rotation/v1";
export const PREDICATE_TYPES = [DECISION, APPROVAL, REVOCATION, RECEIPT, POLICY, KEY_ROTATION];
export const SIGNER_ROLE = {
  [DECISION]: "authority",
  [APPROVAL]: "approver",
  [REVOCATION]: "authority",
  [RECEIPT]: "runtime",
  [POLICY]: "authority",
  [KEY_ROTATION]: "authority",
};

export const isSha256Hex = (v) => isStr(v) && /^[0-9a-f]{64}$/.test(v);

/** The statement a DSSE envelope carries (statement.Statement.from_envelope). */
export function statementFromEnvelope(env) {
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE) throw new MalformedError("DSSE envelope", `payloadType must be ${IN_TOTO_PAYLOAD_TYPE}`);
  const value = loadsStrict(env.payload, "in-toto statement");
  const what = "in-toto statement";
  if (!isDict(value)) throw new MalformedError(what, "expected a JSON object");
  if (get(value, "_type") !== STATEMENT_TYPE) throw new MalformedError(what, `_type must be ${STATEMENT_TYPE}`);
  const subjects = get(value, "subject");
  if (!Array.isArray(subjects) || !subjects.length || subjects.length > 64) {
    throw new MalformedError(what, "subject must be a non-empty list (at most 64)");
  }
  const parsed = subjects.map((s) => {
    if (!isDict(s) || !isStr(get(s, "name")) || !isDict(get(s, "digest"))) throw new MalformedError(what, "each subject needs a name and a digest set");
    const digest = get(s.digest, "sha256");
    if (!isSha256Hex(digest)) throw new MalformedError(what, `subject ${repr(s.name.slice(0, 40))} has no lower-case hex sha256 digest`);
    return { name: s.name, sha256: digest };
  });
  const ptype = get(value, "predicateType");
  const predicate = get(value, "predicate");
  if (!isStr(ptype) || !ptype.includes(":") || !isDict(predicate)) {
    throw new MalformedError(what, "predicateType must be a type URI and predicate an object");
  }
  return {
    subjects: parsed,
    predicateType: ptype,
    predicate,
    subject(name) {
      const s = parsed.find((x) => x.name === name);
      return s ? s.sha256 : null;
    },
  };
}

// -- the action request (fiat.formats.action) ---------------------------------------------------------
const ALNUM = /^[\p{L}\p{N}]+$/u; // Python's str.isalnum()

/** A principal's or resource's one spelling, as a Cedar entity UID: ``Type::"id"`` stays;
 * ``kind:id`` becomes ``Kind::"id"`` (action.entity_uid). */
export function entityUid(value, what) {
  if (!isStr(value) || !value || [...value].length > 1024) throw new MalformedError(what, "must be a non-empty string of at most 1,024 characters");
  if (value.includes('::"') && value.endsWith('"')) return value;
  const i = value.indexOf(":");
  const kind = i < 0 ? "" : value.slice(0, i);
  const ident = i < 0 ? "" : value.slice(i + 1);
  if (i < 0 || !kind || !ident || !ALNUM.test(kind.replace(/_/g, ""))) {
    throw new MalformedError(what, `${repr(value)} is neither Type::"id" nor kind:id`);
  }
  const [first, ...rest] = [...kind];
  return `${first.toUpperCase()}${rest.join("")}::${jsonString(ident)}`;
}

const MAX_SCOPE = 256;

/** A delegation scope: at most 256 ``{"action", "resource"}`` pairs (action.check_scope). */
export function checkScope(value, what = "scope") {
  if (!Array.isArray(value) || value.length > MAX_SCOPE) {
    throw new MalformedError(what, `must be a list of at most ${MAX_SCOPE} {action, resource} pairs`);
  }
  value.forEach((pair, i) => {
    const keys = isDict(pair) ? Object.keys(pair).sort() : null;
    if (!keys || keys.length !== 2 || keys[0] !== "action" || keys[1] !== "resource") {
      throw new MalformedError(what, `item ${i} must be an object with exactly an action and a resource`);
    }
    const action = pair.action;
    if (!isStr(action) || !action || [...action].length > 1024) {
      throw new MalformedError(what, `item ${i}: action must be a non-empty string of at most 1,024 characters`);
    }
    entityUid(pair.resource, `${what} item ${i} resource`);
  });
  return value;
}

/** A checked scope as a set of "action\0resource UID" keys (action.scope_pairs). */
export function scopePairs(scope) {
  return new Set(scope.map((p) => `${p.action}\u0000${entityUid(p.resource, "scope resource")}`));
}

export { canonicalize };
