// The evidence bundle (application/vnd.fiat.bundle.v1+json): a port of fiat.verify.bundle.parse.
// Everything it refuses is a MalformedError (``fiat verify`` exits 2, failedStep "bundle-format").

import { MalformedError, get, has, isDict, isInt, isStr, loadsStrict, repr, utf8Encode, b64stdDecode, LONE_SURROGATE } from "./strict.js";
import { envelopeFromJson, parseJws, statementFromEnvelope } from "./formats.js";
import { HASH_SIZE, parseTlogProof } from "./tlog.js";
import { MAX_LINEAGE_DEPTH } from "./trustroot.js";

export const MEDIA_TYPE = "application/vnd.fiat.bundle.v1+json";
export const MAX_BUNDLE = 8 << 20;
const MAX_STATEMENTS = 256;
const MAX_ANCESTORS = MAX_LINEAGE_DEPTH;
const MAX_RENEWALS = 1024;
const KNOWN = ["mediaType", "actionRequest", "permit", "statements", "consistency", "ancestors", "renewals"];

const uint = (x) => isInt(x) && x >= 0 && BigInt(x) < 1n << 63n;

function proof(value, where) {
  if (!isStr(value)) throw new MalformedError("bundle", `${where} must be a c2sp.org/tlog-proof@v1 text`);
  if (LONE_SURROGATE.test(value)) throw new MalformedError("bundle", `${where} contains a lone UTF-16 surrogate`);
  return parseTlogProof(utf8Encode(value));
}

/** Parse a bundle's bytes as Bundle.parse does (8 MiB, strict JSON, every part checked). */
export async function parseBundle(data) {
  return fromJson(loadsStrict(data, "bundle", MAX_BUNDLE), false);
}

async function fromJson(v, nested) {
  const what = "bundle";
  if (!isDict(v)) throw new MalformedError(what, "expected a JSON object");
  if (get(v, "mediaType") !== MEDIA_TYPE) throw new MalformedError(what, `mediaType must be ${MEDIA_TYPE}`);
  const unknown = Object.keys(v).filter((k) => !KNOWN.includes(k));
  if (unknown.length) throw new MalformedError(what, `unknown members ${repr(unknown.sort())}`);
  const request = get(v, "actionRequest");
  if (!isDict(request)) throw new MalformedError(what, "actionRequest must be an object");
  const permit = get(v, "permit");
  if (!isDict(permit) || !isStr(get(permit, "token"))) throw new MalformedError(what, "permit.token must be a compact JWS string");
  const token = await parseJws(permit.token);
  const permitProof = proof(get(permit, "tlogProof"), "permit.tlogProof");
  const statements = get(v, "statements");
  if (!Array.isArray(statements) || statements.length > MAX_STATEMENTS) {
    throw new MalformedError(what, `statements must be a list of at most ${MAX_STATEMENTS}`);
  }
  const parsed = statements.map((s, i) => {
    if (!isDict(s)) throw new MalformedError(what, `statements[${i}] must be an object`);
    const envelope = envelopeFromJson(get(s, "envelope"));
    return { envelope, statement: statementFromEnvelope(envelope), tlogProof: proof(get(s, "tlogProof"), `statements[${i}]`) };
  });
  const consistency = has(v, "consistency") ? v.consistency : [];
  if (!Array.isArray(consistency) || consistency.length > MAX_STATEMENTS) throw new MalformedError(what, "consistency must be a list");
  const cons = consistency.map((c) => {
    if (!isDict(c)) throw new MalformedError(what, "each consistency proof must be an object");
    const old = get(c, "oldSize");
    const neu = get(c, "newSize");
    const path = get(c, "proof");
    if (!uint(old) || !uint(neu)) throw new MalformedError(what, "a consistency proof needs integer oldSize and newSize");
    if (!Array.isArray(path) || path.length > 128) throw new MalformedError(what, "a consistency proof needs oldSize, newSize and a list of hashes");
    const hashes = path.map((h) => b64stdDecode(h, "consistency proof"));
    if (hashes.some((h) => h.length !== HASH_SIZE)) throw new MalformedError(what, "consistency proof hashes are 32 bytes");
    return { oldSize: BigInt(old), newSize: BigInt(neu), proof: hashes };
  });
  const ancestors = has(v, "ancestors") ? v.ancestors : [];
  if (!Array.isArray(ancestors) || ancestors.length > MAX_ANCESTORS) throw new MalformedError(what, `ancestors must be a list of at most ${MAX_ANCESTORS}`);
  if (nested && ancestors.length) throw new MalformedError(what, "an ancestor bundle cannot carry ancestors of its own; list them flat");
  const anc = [];
  for (const a of ancestors) anc.push(await fromJson(a, true));
  const renewals = has(v, "renewals") ? v.renewals : [];
  if (!Array.isArray(renewals) || renewals.length > MAX_RENEWALS) throw new MalformedError(what, `renewals must be a list of at most ${MAX_RENEWALS}`);
  if (renewals.length && !nested) throw new MalformedError(what, "only an ancestor bundle carries renewals (its parent chain up to the head)");
  const renewed = [];
  for (let i = 0; i < renewals.length; i++) {
    const r = renewals[i];
    const keys = isDict(r) ? Object.keys(r).sort() : null;
    if (!keys || keys.length !== 2 || keys[0] !== "tlogProof" || keys[1] !== "token" || !isStr(r.token)) {
      throw new MalformedError(what, `renewals[${i}] must be an object with a token and a tlogProof`);
    }
    renewed.push({ permit: await parseJws(r.token), tlogProof: proof(r.tlogProof, `renewals[${i}].tlogProof`) });
  }
  return { actionRequest: request, permit: token, permitProof, statements: parsed, consistency: cons, ancestors: anc, renewals: renewed };
}
