// The transparency-log formats, verification side: a port of fiat.tlog (merkle, note,
// checkpoint, proof_file, cosignature). Sizes and indexes are BigInts (trees up to 2^63 leaves).

import {
  LONE_SURROGATE,
  MalformedError,
  VerificationError,
  ascii,
  b64stdDecode,
  bytesEq,
  concat,
  ed25519Verify,
  sha256,
  utf8Decode,
  utf8Encode,
} from "./strict.js";

export const HASH_SIZE = 32;
const EMPTY_ROOT_HEX = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// -- RFC 6962 / RFC 9162 Merkle trees ----------------------------------------------------------
/** MTH({d(0)}) = SHA-256(0x00 || d(0)) — RFC 9162 §2.1.1. */
export const leafHash = (entry) => sha256(concat(new Uint8Array([0]), entry));
/** SHA-256(0x01 || left || right) — RFC 9162 §2.1.1. */
export const nodeHash = (l, r) => sha256(concat(new Uint8Array([1]), l, r));

const isEmptyRoot = (h) => [...h].map((x) => x.toString(16).padStart(2, "0")).join("") === EMPTY_ROOT_HEX;

/** Verify an inclusion proof — RFC 9162 §2.1.3.2 steps 1–5 (merkle.verify_inclusion). */
export async function verifyInclusion(index, size, leaf, proof, root) {
  const step = "inclusion-proof";
  index = BigInt(index);
  size = BigInt(size);
  // Step 1: leaf_index must be < tree_size.
  if (index < 0n || size < 0n || index >= size) throw new VerificationError(step, `leaf index ${index} is not inside a tree of size ${size}`);
  // Step 2
  let fn = index;
  let sn = size - 1n;
  // Step 3
  let r = leaf;
  // Step 4
  for (const p of proof) {
    if (sn === 0n) throw new VerificationError(step, "the proof has more hashes than the tree is deep"); // 4a
    if (fn & 1n || fn === sn) {
      // 4b
      r = await nodeHash(p, r);
      if (!(fn & 1n)) {
        while (fn !== 0n && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; // 4c
    sn >>= 1n;
  }
  // Step 5
  if (sn !== 0n) throw new VerificationError(step, "the proof has fewer hashes than the tree is deep");
  if (!bytesEq(r, root)) {
    throw new VerificationError(step, `the proof for leaf ${index} does not lead to the root hash of the tree of size ${size}`);
  }
}

/** Verify a consistency proof — RFC 9162 §2.1.4.2 (merkle.verify_consistency). */
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  const step = "consistency-proof";
  const m = BigInt(oldSize);
  const n = BigInt(newSize);
  if (m < 0n || n < 0n) throw new VerificationError(step, "tree sizes cannot be negative");
  if (m > n) throw new VerificationError(step, `the old tree (${m}) is larger than the new tree (${n})`);
  if (m === 0n) {
    if (proof.length) throw new VerificationError(step, "a proof from the empty tree must be empty");
    if (!isEmptyRoot(oldRoot)) throw new VerificationError(step, "the root of the empty tree must be SHA-256 of the empty string");
    if (n === 0n && !isEmptyRoot(newRoot)) throw new VerificationError(step, "the root of the empty tree must be SHA-256 of the empty string");
    return;
  }
  if (m === n) {
    if (proof.length) throw new VerificationError(step, "a proof between trees of equal size must be empty");
    if (!bytesEq(oldRoot, newRoot)) throw new VerificationError(step, `two different roots for the same tree size ${m}`);
    return;
  }
  // Step 1
  if (!proof.length) throw new VerificationError(step, "the proof is empty");
  const path = [...proof];
  // Step 2: if first is an exact power of 2, prepend first_hash.
  if ((m & (m - 1n)) === 0n) path.unshift(oldRoot);
  // Step 3
  let fn = m - 1n;
  let sn = n - 1n;
  // Step 4
  while (fn & 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  // Step 5
  let fr = path[0];
  let sr = path[0];
  // Step 6
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new VerificationError(step, "the proof has more hashes than the tree is deep");
    if (fn & 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if (!(fn & 1n)) {
        while (fn !== 0n && !(fn & 1n)) {
          fn >>= 1n;
          sn >>= 1n;
        }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  // Step 7
  if (sn !== 0n) throw new VerificationError(step, "the proof has fewer hashes than the tree is deep");
  if (!bytesEq(fr, oldRoot)) throw new VerificationError(step, `the proof does not lead to the root of the old tree (size ${m})`);
  if (!bytesEq(sr, newRoot)) throw new VerificationError(step, `the proof does not lead to the root of the new tree (size ${n})`);
}

// -- C2SP signed-note ----------------------------------------------------------------------------
export const ALG_ED25519 = 0x01; // signed-note §Signature types
export const ALG_COSIGNATURE_V1 = 0x04; // c2sp.org/tlog-cosignature
const SIG_PREFIX = "\u2014 "; // em dash, space — signed-note §Format
const MAX_SIGNATURES = 100;
const MAX_NOTE_SIZE = 1 << 20;
// Python's str.isspace() and Unicode category Zs (what note.check_key_name refuses).
const SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

/** key ID = SHA-256(key name || 0x0A || signature type || public key)[:4] — signed-note §Signatures. */
export async function keyId(name, alg, publicKey) {
  if (LONE_SURROGATE.test(name)) {
    // Python's name.encode("utf-8") raises UnicodeEncodeError here, no MalformedError: the
    // verifier reports it as unexpected structure, and so does this port.
    const e = new Error("a key name contains a lone UTF-16 surrogate");
    e.name = "UnicodeEncodeError";
    throw e;
  }
  const d = await sha256(concat(utf8Encode(name, "key name"), new Uint8Array([0x0a, alg]), publicKey));
  return ((d[0] << 24) >>> 0) + (d[1] << 16) + (d[2] << 8) + d[3];
}

/** Key names MUST be non-empty and contain no Unicode spaces or '+' — signed-note §Format. */
export function checkKeyName(name) {
  if (!name) throw new MalformedError("key name", "key names must not be empty");
  for (const ch of name) {
    if (ch === "+" || SPACE.test(ch) || ch.codePointAt(0) < 0x20) {
      throw new MalformedError("key name", `'${name}' contains a space, a control character or '+'`);
    }
  }
}

/** An Ed25519 note verifier (note.Verifier.from_public_key). */
export async function noteVerifier(name, publicKey) {
  checkKeyName(name);
  return { name, keyId: await keyId(name, ALG_ED25519, publicKey), publicKey };
}

/** Split a signed note into text and signature lines (note.parse). */
export function parseNote(data) {
  if (data.length > MAX_NOTE_SIZE) throw new MalformedError("signed note", `larger than ${MAX_NOTE_SIZE} bytes`);
  const s = utf8Decode(data, "signed note");
  // Signed notes MUST NOT contain ASCII control characters other than newline — §Format.
  const ctl = /[\x00-\x09\x0b-\x1f]/.exec(s);
  if (ctl) throw new MalformedError("signed note", `contains the control character ${JSON.stringify(ctl[0])}`);
  // The text is separated from the signatures by the last empty line.
  const split = s.lastIndexOf("\n\n");
  if (split < 0) throw new MalformedError("signed note", "no blank line separates the text from the signatures");
  const text = s.slice(0, split + 1);
  const block = s.slice(split + 2);
  if (!block.endsWith("\n")) throw new MalformedError("signed note", "the last signature line must end with a newline");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) throw new MalformedError("signed note", `more than ${MAX_SIGNATURES} signatures`);
  const signatures = [];
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) throw new MalformedError("signed note", "signature line does not start with an em dash");
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(" ");
    const name = sp < 0 ? rest : rest.slice(0, sp);
    const sigB64 = sp < 0 ? "" : rest.slice(sp + 1);
    if (sp < 0 || !name || sigB64.includes(" ")) throw new MalformedError("signed note", "signature line is not '— <name> <base64>'");
    checkKeyName(name);
    const raw = b64stdDecode(sigB64, "signed note", "non-canonical base64");
    if (raw.length < 5) throw new MalformedError("signed note", "a signature must hold a 4-byte key ID and a signature");
    const kid = ((raw[0] << 24) >>> 0) + (raw[1] << 16) + (raw[2] << 8) + raw[3];
    signatures.push({ name, keyId: kid, signature: raw.subarray(4) });
  }
  return { text, signatures };
}

/** Parse and verify a signed note — signed-note §Signatures (note.open_note). Unknown keys'
 * signatures are ignored; a known key's bad signature rejects the note; none verified rejects it. */
export async function openNote(data, verifiers) {
  const note = parseNote(data);
  const known = new Map();
  for (const v of verifiers) {
    const k = `${v.name}\u0000${v.keyId}`;
    const other = known.get(k);
    if (other && !bytesEq(other.publicKey, v.publicKey)) {
      throw new VerificationError("note-signature", `ambiguous verifier keys for ${v.name}+${v.keyId.toString(16).padStart(8, "0")}`);
    }
    known.set(k, v);
  }
  const message = utf8Encode(note.text, "signed note");
  const verified = [];
  for (const sig of note.signatures) {
    const trusted = known.get(`${sig.name}\u0000${sig.keyId}`);
    if (!trusted) continue; // MUST ignore signatures from unknown keys
    if (!(await ed25519Verify(trusted.publicKey, sig.signature, message))) {
      throw new VerificationError("note-signature", `the signature by ${sig.name} (${sig.keyId.toString(16).padStart(8, "0")}) does not verify`);
    }
    verified.push(sig);
  }
  if (!verified.length) {
    const names = [...known.values()].map((v) => `${v.name}+${v.keyId.toString(16).padStart(8, "0")}`).sort().join(", ") || "none";
    throw new VerificationError("note-signature", `no signature from a trusted key (trusted: ${names})`);
  }
  return { note, verified };
}

// -- C2SP tlog-checkpoint -------------------------------------------------------------------------
/** The checkpoint note text — tlog-checkpoint §Note text (checkpoint.Checkpoint.parse_text). */
export function parseCheckpointText(text) {
  const what = "checkpoint";
  if (!text.endsWith("\n")) throw new MalformedError(what, "the note text must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new MalformedError(what, "expected at least three lines: origin, tree size, root hash");
  const [origin, sizeS, rootS, ...ext] = lines;
  if (!origin) throw new MalformedError(what, "the origin line is empty");
  if (!/^[0-9]+$/.test(sizeS) || (sizeS.length > 1 && sizeS[0] === "0")) {
    throw new MalformedError(what, `tree size '${sizeS.slice(0, 30)}' is not a decimal with no leading zeroes`);
  }
  if (sizeS.length > 20 || BigInt(sizeS) >= 1n << 63n) throw new MalformedError(what, "tree size is out of range");
  const root = b64stdDecode(rootS, what, "non-canonical base64");
  if (root.length !== HASH_SIZE) throw new MalformedError(what, `root hash is ${root.length} bytes, expected ${HASH_SIZE}`);
  if (ext.some((e) => !e)) throw new MalformedError(what, "extension lines must not be empty");
  return { origin, size: BigInt(sizeS), root, extensions: ext };
}

/** Verify a checkpoint signed by the log key and parse it (checkpoint.open_checkpoint):
 * note-signature, checkpoint-format, checkpoint-origin. */
export async function openCheckpoint(data, logVerifier) {
  const { note, verified } = await openNote(data, [logVerifier]);
  if (!verified.some((s) => s.name === logVerifier.name && s.keyId === logVerifier.keyId)) {
    throw new VerificationError("note-signature", `the checkpoint is not signed by the log key ${logVerifier.name}`);
  }
  const cp = parseCheckpointText(note.text);
  if (cp.origin !== logVerifier.name) {
    throw new VerificationError("checkpoint-origin", `checkpoint origin '${cp.origin}' is not the log's origin '${logVerifier.name}'`);
  }
  return { ...cp, noteBytes: data };
}

/** Open a checkpoint signed by any of a log's keys; ``maxSizes[i]`` bounds what key i vouches for
 * (checkpoint.open_with_any: a retired log key vouches only for trees up to its retirement). */
export async function openWithAny(data, keys, maxSizes) {
  if (!keys.length) throw new VerificationError("note-signature", "no log key to verify the checkpoint with");
  let last = null;
  for (let i = 0; i < keys.length; i++) {
    let cp;
    try {
      cp = await openCheckpoint(data, keys[i]);
    } catch (e) {
      if (e instanceof MalformedError || e instanceof VerificationError) {
        last = e;
        continue;
      }
      throw e;
    }
    const limit = maxSizes ? maxSizes[i] : null;
    if (limit !== null && limit !== undefined && cp.size > BigInt(limit)) {
      throw new VerificationError("note-signature", `the checkpoint (size ${cp.size}) is signed by a retired log key trusted only up to size ${limit}`);
    }
    return cp;
  }
  throw last;
}

// -- C2SP tlog-proof ---------------------------------------------------------------------------------
const HEADER = "c2sp.org/tlog-proof@v1";
const MAX_PROOF_SIZE = 1 << 20;
const MAX_PATH = 64;

/** Parse a c2sp.org/tlog-proof@v1 text (proof_file.TlogProof.parse). */
export function parseTlogProof(data) {
  const what = "tlog-proof";
  if (data.length > MAX_PROOF_SIZE) throw new MalformedError(what, `larger than ${MAX_PROOF_SIZE} bytes`);
  let cut = -1;
  for (let i = 0; i + 1 < data.length; i++) {
    if (data[i] === 0x0a && data[i + 1] === 0x0a) {
      cut = i;
      break;
    }
  }
  if (cut < 0) throw new MalformedError(what, "no empty line before the checkpoint");
  const head = data.subarray(0, cut);
  const checkpoint = data.subarray(cut + 2);
  if (head.some((b) => b > 0x7f)) throw new MalformedError(what, "the proof header is not ASCII");
  const lines = String.fromCharCode(...head).split("\n");
  if (lines[0] !== HEADER) throw new MalformedError(what, `the first line must be '${HEADER}'`);
  let pos = 1;
  let extra = null;
  if (pos < lines.length && lines[pos].startsWith("extra ")) {
    extra = b64stdDecode(lines[pos].slice(6), what, "non-canonical base64");
    pos++;
  }
  if (pos >= lines.length || !lines[pos].startsWith("index ")) throw new MalformedError(what, "missing the 'index <N>' line");
  const idx = lines[pos].slice(6);
  if (!/^[0-9]+$/.test(idx) || (idx.length > 1 && idx[0] === "0") || idx.length > 19) {
    throw new MalformedError(what, `index '${idx.slice(0, 30)}' is not a decimal with no leading zeroes`);
  }
  pos++;
  const pathLines = lines.slice(pos);
  if (pathLines.length > MAX_PATH) throw new MalformedError(what, `more than ${MAX_PATH} proof hashes`);
  const path = pathLines.map((line) => {
    const h = b64stdDecode(line, what, "non-canonical base64");
    if (h.length !== HASH_SIZE) throw new MalformedError(what, `a proof hash is ${h.length} bytes, expected ${HASH_SIZE}`);
    return h;
  });
  if (!checkpoint.length) throw new MalformedError(what, "the checkpoint is missing");
  return { index: BigInt(idx), path, checkpoint: new Uint8Array(checkpoint), extra };
}

/** tlog-proof verification step 4 against an already verified checkpoint (proof_file.check_inclusion). */
export async function checkInclusion(proof, leaf, cp) {
  if (proof.index >= cp.size) {
    throw new VerificationError("inclusion-proof", `index ${proof.index} is not inside the checkpoint's tree of size ${cp.size}`);
  }
  await verifyInclusion(proof.index, cp.size, leaf, proof.path, cp.root);
}

// -- C2SP tlog-cosignature ---------------------------------------------------------------------------
/** The (name, timestamp) of every known witness whose cosignature verifies (cosignature.verified_cosigners):
 * ``u64 BE timestamp || Ed25519 signature`` over "cosignature/v1\ntime <ts>\n<checkpoint text>". */
export async function verifiedCosigners(note, witnesses) {
  const out = [];
  for (const [name, pub] of witnesses) {
    const kid = await keyId(name, ALG_COSIGNATURE_V1, pub);
    for (const sig of note.signatures) {
      if (sig.name !== name || sig.keyId !== kid || sig.signature.length !== 72) continue;
      let ts = 0n;
      for (let i = 0; i < 8; i++) ts = (ts << 8n) | BigInt(sig.signature[i]);
      if (ts > (1n << 63n) - 1n) continue;
      const message = concat(ascii(`cosignature/v1\ntime ${ts}\n`), utf8Encode(note.text));
      if (!(await ed25519Verify(pub, sig.signature.subarray(8), message))) continue;
      out.push([name, Number(ts)]);
      break;
    }
  }
  return out;
}
