// Strict encodings shared by the in-browser verifier: a port of fiat.formats.encoding,
// fiat.formats.jcs and fiat.errors. Vanilla ES module, no dependencies, no I/O.
//
// JSON is parsed by our own parser, not JSON.parse: JSON.parse silently keeps the last of two
// duplicate member names, loses integers beyond 2^53 and the int/float distinction, all of which
// the Python verifier (json.loads with an object_pairs_hook) refuses or keeps.

/** A rule failed: ``step`` names it (fiat.errors.VerificationError). */
export class VerificationError extends Error {
  constructor(step, reason) {
    super(`${step}: ${reason}`);
    this.step = step;
    this.reason = reason;
  }
}

/** Input does not parse as the format it claims (fiat.errors.MalformedError). */
export class MalformedError extends Error {
  constructor(what, reason) {
    super(`malformed ${what}: ${reason}`);
    this.what = what;
    this.reason = reason;
  }
}

/** A JSON number written with a fraction or an exponent (Python's float). Integers are
 * Numbers when within ±(2^53-1), else BigInts (Python's int). */
export class JFloat {
  constructor(value) {
    this.value = value;
  }
}

export const MAX_DEPTH = 64;
const MAX_INT_DIGITS = 4300; // CPython's int_max_str_digits: longer integers are refused

export const isDict = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JFloat);
export const isStr = (v) => typeof v === "string";
/** Python ``isinstance(v, int)``: true for booleans too. */
export const isIntOrBool = (v) => typeof v === "boolean" || typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v));
/** Python ``isinstance(v, int) and not isinstance(v, bool)``. */
export const isInt = (v) => typeof v === "bigint" || (typeof v === "number" && Number.isInteger(v));
export const isNum = (v) => isInt(v) || v instanceof JFloat;
/** A number (int, float, bool) as a double, for Python's mixed int/float arithmetic. */
export const num = (v) => (v instanceof JFloat ? v.value : typeof v === "boolean" ? (v ? 1 : 0) : Number(v));
export const has = (o, k) => isDict(o) && Object.prototype.hasOwnProperty.call(o, k);
export const get = (o, k, dflt = undefined) => (has(o, k) ? o[k] : dflt);

/** Python ``==`` over parsed JSON values (1 == 1.0 == True; dicts by members; lists in order). */
export function pyEq(a, b) {
  const na = typeof a === "boolean" || isNum(a);
  const nb = typeof b === "boolean" || isNum(b);
  if (na || nb) {
    if (!(na && nb)) return false;
    if (a instanceof JFloat || b instanceof JFloat) return num(a) === num(b);
    const ia = typeof a === "boolean" ? BigInt(a ? 1 : 0) : BigInt(a);
    const ib = typeof b === "boolean" ? BigInt(b ? 1 : 0) : BigInt(b);
    return ia === ib;
  }
  if (a === undefined) a = null;
  if (b === undefined) b = null;
  if (a === null || b === null || isStr(a) || isStr(b)) return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!(Array.isArray(a) && Array.isArray(b)) || a.length !== b.length) return false;
    return a.every((x, i) => pyEq(x, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => has(b, k) && pyEq(a[k], b[k]));
}

/** Python ``repr`` of a value, for details that quote one (close, not exact). */
export function repr(v) {
  if (v === undefined || v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (isStr(v)) {
    // Python's quoting: single quotes unless the text holds one and no double quote.
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    const esc = { "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" };
    let out = "";
    for (const ch of v) {
      const c = ch.codePointAt(0);
      if (esc[ch]) out += esc[ch];
      else if (ch === q) out += "\\" + q;
      else if (c < 0x20 || c === 0x7f) out += "\\x" + c.toString(16).padStart(2, "0");
      else if (c >= 0xd800 && c <= 0xdfff) out += "\\u" + c.toString(16);
      else out += ch;
    }
    return q + out + q;
  }
  if (v instanceof JFloat) return String(v.value);
  if (typeof v === "number" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return `[${v.map(repr).join(", ")}]`;
  return `{${Object.keys(v).map((k) => `${repr(k)}: ${repr(v[k])}`).join(", ")}}`;
}

// -- UTF-8 ------------------------------------------------------------------------------------
const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** Strict UTF-8 decoding (Python's ``bytes.decode("utf-8")``: no surrogates, no overlongs, BOM kept). */
export function utf8Decode(bytes, what) {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new MalformedError(what, "not UTF-8");
  }
}

export const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Python's ``str.encode("utf-8")``: a lone surrogate is an error (TextEncoder would replace it). */
export function utf8Encode(s, what = "JSON") {
  if (LONE_SURROGATE.test(s)) throw new MalformedError(what, "a string contains a lone UTF-16 surrogate");
  return encoder.encode(s);
}

export function ascii(s) {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

export function concat(...parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function bytesEq(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Bytes as a string key (one char per byte) for maps keyed by bytes. */
export const bkey = (b) => {
  let s = "";
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192));
  return s;
};

export const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");

// -- base64 (RFC 4648) ------------------------------------------------------------------------
const STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

function enc(bytes, alphabet, pad) {
  let out = "";
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + alphabet[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + (pad ? "==" : "");
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += alphabet[n >> 18] + alphabet[(n >> 12) & 63] + alphabet[(n >> 6) & 63] + (pad ? "=" : "");
  }
  return out;
}

function dec(text, alphabet) {
  const bits = [];
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let n = 0;
  let o = 0;
  for (const ch of text) {
    const v = alphabet.indexOf(ch);
    acc = (acc << 6) | v;
    n += 6;
    if (n >= 8) {
      n -= 8;
      out[o++] = (acc >> n) & 0xff;
    }
  }
  void bits;
  return out.subarray(0, o);
}

export const b64std = (bytes) => enc(bytes, STD, true);
export const b64url = (bytes) => enc(bytes, URL, false);

/** Standard base64, padded, in its one canonical spelling (encoding.b64std_decode, RFC 4648 §3.5:
 * the unused bits must be zero) — also note.b64decode_strict. */
export function b64stdDecode(text, what, reason = "non-canonical base64 (RFC 4648 §3.5: the unused bits must be zero)") {
  if (!isStr(text)) throw new MalformedError(what, "expected a base64 string");
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) throw new MalformedError(what, "invalid base64");
  const body = text.replace(/=+$/, "");
  if (body.length % 4 === 1) throw new MalformedError(what, "invalid base64");
  const raw = dec(body, STD);
  if (b64std(raw) !== text) throw new MalformedError(what, reason);
  return raw;
}

/** Unpadded base64url (RFC 7515 §2) in its one canonical spelling (encoding.b64url_decode). */
export function b64urlDecode(text, what) {
  if (!isStr(text) || !/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) {
    throw new MalformedError(what, "not unpadded base64url (RFC 7515 §2)");
  }
  const raw = dec(text, URL);
  if (b64url(raw) !== text) throw new MalformedError(what, "non-canonical base64url");
  return raw;
}

// -- strict JSON (encoding.loads_strict) ------------------------------------------------------
/** Parse JSON as Python's ``loads_strict``: size- and depth-bounded, duplicate member names,
 * NaN/Infinity, invalid UTF-8 and a BOM refused; lone surrogate escapes kept (as Python does). */
export function loadsStrict(data, what, maxSize = 16 << 20) {
  if (data.length > maxSize) throw new MalformedError(what, `larger than ${maxSize.toLocaleString("en-US")} bytes`);
  const text = typeof data === "string" ? data : utf8Decode(data, what);
  try {
    return new Parser(text).document();
  } catch (e) {
    if (e instanceof JsonError) throw new MalformedError(what, e.message);
    throw e;
  }
}

class JsonError extends Error {}

// RFC 8259 §6 number grammar (Python's json NUMBER_RE), sticky: matched in place, no copies.
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;

class Parser {
  constructor(text) {
    this.s = text;
    this.i = 0;
  }
  /** Python's json.JSONDecodeError text: "<msg>: line L column C (char P)". */
  fail(msg, at = this.i) {
    const before = this.s.slice(0, at);
    const line = before.split("\n").length;
    const col = at - before.lastIndexOf("\n");
    throw new JsonError(`not valid JSON: ${msg}: line ${line} column ${col} (char ${at})`);
  }
  ws() {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else break;
    }
  }
  document() {
    if (this.s.startsWith("\ufeff")) this.fail("Unexpected UTF-8 BOM (decode using utf-8-sig)", 0);
    this.ws();
    const v = this.value(1);
    this.ws();
    if (this.i !== this.s.length) this.fail("Extra data");
    return v;
  }
  value(depth) {
    const s = this.s;
    const c = s[this.i];
    if (c === "{" || c === "[") {
      if (depth > MAX_DEPTH) throw new JsonError(`nested deeper than ${MAX_DEPTH} levels`);
      return c === "{" ? this.object(depth) : this.array(depth);
    }
    if (c === '"') return this.string();
    if (c === "t" && s.startsWith("true", this.i)) return (this.i += 4), true;
    if (c === "f" && s.startsWith("false", this.i)) return (this.i += 5), false;
    if (c === "n" && s.startsWith("null", this.i)) return (this.i += 4), null;
    if (s.startsWith("NaN", this.i)) throw new JsonError("NaN is not a JSON number");
    if (s.startsWith("Infinity", this.i)) throw new JsonError("Infinity is not a JSON number");
    if (s.startsWith("-Infinity", this.i)) throw new JsonError("-Infinity is not a JSON number");
    return this.number();
  }
  object(depth) {
    const out = Object.create(null);
    this.i++;
    this.ws();
    if (this.s[this.i] === "}") return this.i++, out;
    for (;;) {
      if (this.s[this.i] !== '"') this.fail("Expecting property name enclosed in double quotes");
      const k = this.string();
      this.ws();
      if (this.s[this.i] !== ":") this.fail("Expecting ':' delimiter");
      this.i++;
      this.ws();
      const v = this.value(depth + 1);
      if (Object.prototype.hasOwnProperty.call(out, k)) throw new JsonError(`duplicate member name ${repr(k.slice(0, 40))}`);
      out[k] = v;
      this.ws();
      const c = this.s[this.i++];
      if (c === "}") return out;
      if (c !== ",") this.fail("Expecting ',' delimiter", this.i - 1);
      this.ws();
    }
  }
  array(depth) {
    const out = [];
    this.i++;
    this.ws();
    if (this.s[this.i] === "]") return this.i++, out;
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === "]") return out;
      if (c !== ",") this.fail("Expecting ',' delimiter", this.i - 1);
      this.ws();
    }
  }
  string() {
    const s = this.s;
    let i = this.i + 1;
    let out = "";
    let start = i;
    for (;;) {
      if (i >= s.length) this.fail("Unterminated string starting at", this.i);
      const c = s.charCodeAt(i);
      if (c === 0x22) break;
      if (c < 0x20) {
        this.fail("Invalid control character at", i);
      }
      if (c === 0x5c) {
        out += s.slice(start, i);
        if (i + 1 >= s.length) this.fail("Unterminated string starting at", this.i);
        const e = s[i + 1];
        const simple = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" }[e];
        if (simple !== undefined) {
          out += simple;
          i += 2;
        } else if (e === "u") {
          const h4 = s.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(h4)) this.fail("Invalid \\uXXXX escape", i + 1);
          out += String.fromCharCode(parseInt(h4, 16));
          i += 6;
        } else {
          this.fail("Invalid \\escape", i);
        }
        start = i;
        continue;
      }
      i++;
    }
    out += s.slice(start, i);
    this.i = i + 1;
    return out;
  }
  number() {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.s);
    if (!m || !m[0]) this.fail("Expecting value");
    const t = m[0];
    this.i += t.length;
    if (m[1] === undefined && m[2] === undefined) {
      if (t.replace("-", "").length > MAX_INT_DIGITS) throw new JsonError("an integer with more than 4300 digits");
      const b = BigInt(t);
      return b <= 9007199254740991n && b >= -9007199254740991n ? Number(b) : b;
    }
    return new JFloat(Number(t));
  }
}

// -- RFC 8785 (JCS) ---------------------------------------------------------------------------
/** RFC 8785 §3.2.2.2 string form (as Python's json encode_basestring with ensure_ascii=False). */
export function jsonString(s) {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += "\\\\";
    else if (c < 0x20) {
      out += { 8: "\\b", 9: "\\t", 10: "\\n", 12: "\\f", 13: "\\r" }[c] ?? "\\u" + c.toString(16).padStart(4, "0");
    } else out += s[i];
  }
  return out + '"';
}

/** The RFC 8785 canonical UTF-8 bytes of a parsed JSON value (fiat.formats.jcs.canonicalize). */
export function canonicalize(value) {
  const out = [];
  encodeJcs(value, 0, out);
  return utf8Encode(out.join(""));
}

function encodeJcs(v, depth, out) {
  if (depth > MAX_DEPTH) throw new MalformedError("JSON", `nested deeper than ${MAX_DEPTH} levels`);
  if (v === null || v === undefined) out.push("null");
  else if (v === true) out.push("true");
  else if (v === false) out.push("false");
  else if (typeof v === "bigint") throw new MalformedError("JSON", `integer ${v} is outside the IEEE 754 exact range (RFC 8785 §3.2.2.3)`);
  else if (typeof v === "number") out.push(String(v));
  else if (v instanceof JFloat) {
    // RFC 8785 §3.2.2.3: ECMAScript Number.prototype.toString — which is what String() is.
    if (!Number.isFinite(v.value)) throw new MalformedError("JSON", "NaN and Infinity are not JSON numbers");
    out.push(String(v.value));
  } else if (isStr(v)) {
    if (LONE_SURROGATE.test(v)) throw new MalformedError("JSON", "a string contains a lone UTF-16 surrogate");
    out.push(jsonString(v));
  } else if (Array.isArray(v)) {
    out.push("[");
    v.forEach((x, i) => {
      if (i) out.push(",");
      encodeJcs(x, depth + 1, out);
    });
    out.push("]");
  } else {
    const keys = Object.keys(v);
    for (const k of keys) {
      if (LONE_SURROGATE.test(k)) throw new MalformedError("JSON", "a member name contains a lone UTF-16 surrogate");
    }
    keys.sort(); // RFC 8785 §3.2.3: UTF-16 code units, JavaScript's own string order
    out.push("{");
    keys.forEach((k, i) => {
      if (i) out.push(",");
      out.push(jsonString(k), ":");
      encodeJcs(v[k], depth + 1, out);
    });
    out.push("}");
  }
}

// -- time (encoding.parse_time, rfc3339) ------------------------------------------------------
// parse_time is ``datetime.fromisoformat(value[:-1] + "+00:00").timestamp()``. Python 3.11's
// fromisoformat (Modules/_datetimemodule.c) reads more than RFC 3339: basic and ISO-week dates,
// any one separator character, compact times. A verifier that read times differently would judge
// a signed receipt differently, so this is a port of that parser, over the same UTF-8 bytes.
const DIGIT = (c) => c >= 0x30 && c <= 0x39;

function utcDays(y, m, d) {
  const date = new Date(0);
  date.setUTCFullYear(y, m - 1, d);
  return Math.round(date.getTime() / 86400000);
}

function isoTime(b, what, value) {
  const bad = () => new MalformedError(what, `${repr(value)} is not an RFC 3339 time`);
  const at = (i) => (i < b.length ? b[i] : 0); // C strings end in NUL
  const digits = (p, n) => {
    let v = 0;
    for (let i = 0; i < n; i++) {
      if (!DIGIT(at(p + i))) return null;
      v = v * 10 + (at(p + i) - 0x30);
    }
    return [p + n, v];
  };
  // parse_hh_mm_ss_ff: [HH[:?MM[:?SS]]][.,ffffff…]; returns [rv, [h, m, s, us]]
  const hhmmssff = (p, pEnd) => {
    const vals = [0, 0, 0];
    let us = 0;
    let hasSep = true;
    for (let i = 0; i < 3; i++) {
      const r = digits(p, 2);
      if (r === null) return [-3];
      [p, vals[i]] = r;
      const c = at(p++);
      if (i === 0) hasSep = c === 0x3a;
      if (p >= pEnd) return [c !== 0 ? 1 : 0, [...vals, 0]];
      if (hasSep && c === 0x3a) continue;
      if (c === 0x2e || c === 0x2c) break;
      if (!hasSep) p--;
      else return [-4];
    }
    const toParse = Math.min(pEnd - p, 6);
    const r = digits(p, toParse);
    if (r === null) return [-3];
    [p, us] = r;
    if (toParse < 6 && toParse > 0) us *= [100000, 10000, 1000, 100, 10][toParse - 1];
    while (DIGIT(at(p))) p++;
    return [at(p) !== 0 ? 1 : 0, [...vals, us]];
  };
  // _find_isoformat_datetime_separator
  const len = b.length;
  let sep;
  if (len === 7) sep = 7;
  else if (at(4) === 0x2d) {
    if (len < 7) throw bad();
    if (at(5) === 0x57) {
      if (len < 8) throw bad();
      if (len > 8 && at(8) === 0x2d) {
        if (len === 9) throw bad();
        sep = len > 10 && DIGIT(at(10)) ? 8 : 10;
      } else sep = 8;
    } else sep = 10;
  } else if (at(4) === 0x57) {
    let idx = 7;
    while (idx < len && DIGIT(at(idx))) idx++;
    sep = idx < 9 ? idx : idx % 2 === 0 ? 7 : 8;
  } else sep = 8;
  // parse_isoformat_date
  let p = 0;
  let r = digits(p, 4);
  if (r === null) throw bad();
  let year;
  let month;
  let day;
  [p, year] = r;
  const usesSep = at(p) === 0x2d;
  if (usesSep) p++;
  if (at(p) === 0x57) {
    p++;
    r = digits(p, 2);
    if (r === null) throw bad();
    let week;
    let wday = 1;
    [p, week] = r;
    if (p < sep) {
      if (usesSep && at(p++) !== 0x2d) throw bad();
      r = digits(p, 1);
      if (r === null) throw bad();
      [p, wday] = r;
    }
    // iso_to_ymd: ISO 8601 week dates; week 53 only in years starting on a Thursday (or a
    // Wednesday, in a leap year); week 1 is the one holding January 4th.
    const jan4 = utcDays(year, 1, 4);
    const weekday = (days) => ((((days % 7) + 7 + 3) % 7) + 1); // 1 Monday .. 7 Sunday (1970-01-01: a Thursday)
    const jan1 = weekday(utcDays(year, 1, 1));
    const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
    const longYear = jan1 === 4 || (leap && jan1 === 3);
    if (week <= 0 || week >= 53 + (longYear ? 1 : 0) || wday <= 0 || wday >= 8) throw bad();
    const days = jan4 - (weekday(jan4) - 1) + (week - 1) * 7 + (wday - 1);
    const d = new Date(days * 86400000);
    [year, month, day] = [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate()];
  } else {
    r = digits(p, 2);
    if (r === null) throw bad();
    [p, month] = r;
    if (usesSep && at(p++) !== 0x2d) throw bad();
    r = digits(p, 2);
    if (r === null) throw bad();
    [p, day] = r;
  }
  let hh = 0;
  let mi = 0;
  let ss = 0;
  let us = 0;
  let tz = null;
  if (len > sep) {
    // parse_isoformat_time, from just after the separator (any one character: UTF-8 lengths
    // read from its lead byte) to the end
    const lead = at(sep);
    const t0 = sep + (lead < 0x80 ? 1 : (lead & 0xf0) === 0xe0 ? 3 : (lead & 0xf0) === 0xf0 ? 4 : 2);
    let tzPos = t0;
    do {
      const c = at(tzPos);
      if (c === 0x5a || c === 0x2b || c === 0x2d) break;
    } while (++tzPos < len);
    const [rv, vals] = hhmmssff(t0, tzPos);
    if (rv < 0) throw bad();
    [hh, mi, ss, us] = vals;
    if (tzPos === len) {
      if (rv === 1) throw bad();
    } else if (at(tzPos) === 0x5a) {
      if (tzPos + 1 !== len) throw bad();
      tz = 0;
    } else {
      const sign = at(tzPos) === 0x2d ? -1 : 1;
      const [trv, tv] = hhmmssff(tzPos + 1, len);
      if (trv < 0 || trv) throw bad();
      tz = sign * (tv[0] * 3600 + tv[1] * 60 + tv[2]) * 1e6 + sign * tv[3];
      if (Math.abs(tz) >= 86400e6) throw bad();
    }
  }
  const dim = [31, year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 || day > dim[month - 1]) throw bad();
  if (hh > 23 || mi > 59 || ss > 59 || us > 999999) throw bad();
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hh, mi, ss, 0);
  // A naive result (no offset read) is local time to Python; Fiat's machines and this page read UTC.
  const micros = (date.getTime() / 1000) * 1e6 + us - (tz ?? 0);
  return micros / 1e6; // timedelta.total_seconds(): one correctly rounded division
}

/** An RFC 3339 UTC timestamp (``...Z``) as POSIX seconds (encoding.parse_time). */
export function parseTime(value, what) {
  if (!isStr(value) || !value.endsWith("Z") || !value.includes("T")) {
    throw new MalformedError(what, `${repr(value)} is not an RFC 3339 UTC time like 2026-01-31T12:00:00Z`);
  }
  if (LONE_SURROGATE.test(value)) throw new MalformedError(what, `${repr(value)} is not an RFC 3339 time`);
  return isoTime(encoder.encode(value.slice(0, -1) + "+00:00"), what, value);
}

/** RFC 3339 UTC to the second. */
export function rfc3339(ts) {
  const d = new Date(Math.floor(ts) * 1000);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// -- hashing ----------------------------------------------------------------------------------
export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}
export async function sha256Hex(bytes) {
  return hex(await sha256(bytes));
}

/** RFC 8032 Ed25519 verification through WebCrypto; a key WebCrypto refuses verifies nothing. */
const keyCache = new Map();
export async function ed25519Verify(publicKey, signature, message) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const k = bkey(publicKey);
  let key = keyCache.get(k);
  if (key === undefined) {
    try {
      key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch {
      key = null;
    }
    if (keyCache.size > 4096) keyCache.clear();
    keyCache.set(k, key);
  }
  if (key === null) return false;
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false;
  }
}

/** RFC 7638 JWK thumbprint (SHA-256, base64url) of an Ed25519 key (RFC 8037 §2 OKP JWK). */
export async function jwkThumbprint(publicKey) {
  // RFC 7638 §3.2: required members only, lexicographic order, no whitespace.
  return b64url(await sha256(ascii(`{"crv":"Ed25519","kty":"OKP","x":"${b64url(publicKey)}"}`)));
}
