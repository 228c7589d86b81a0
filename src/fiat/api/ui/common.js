// Fiat's web surfaces: what every page shares. Vanilla ES modules, no dependencies
// (ARCHITECTURE.md says why). Nothing here talks to any origin but the page's own.

/** Text-only element builder: children are nodes or strings (never parsed as HTML). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** A time (Unix seconds) as local ISO-like text. */
export function fmtTime(seconds) {
  if (seconds === undefined || seconds === null || !Number.isFinite(Number(seconds))) return "—";
  const d = new Date(Number(seconds) * 1000);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function short(text, n = 12) {
  const s = String(text ?? "");
  return s.length > n + 1 ? s.slice(0, n) + "…" : s;
}

/** The admin bearer token, kept for this tab only (sessionStorage), never in a URL. */
export const adminToken = {
  get: () => sessionStorage.getItem("fiat.adminToken") || "",
  set: (t) => (t ? sessionStorage.setItem("fiat.adminToken", t) : sessionStorage.removeItem("fiat.adminToken")),
};

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** JSON from this server; ``admin: true`` adds the admin bearer token. Problems become ApiError. */
export async function api(path, { method = "GET", body, admin = false, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  if (admin) {
    const token = adminToken.get();
    if (!token) throw new ApiError(401, { title: "Admin credential needed", detail: "enter the admin token (fiat serve prints where it is) first" });
    init.headers.Authorization = `Bearer ${token}`;
  }
  const res = await fetch(path, init);
  const type = res.headers.get("content-type") || "";
  const data = type.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new ApiError(res.status, typeof data === "object" ? data : { detail: String(data) });
  return data;
}

/**
 * A server-sent-events subscription that survives drops: on an error it reconnects with
 * exponential backoff (0.5 s doubling to 15 s, with jitter), resuming from the last event id
 * (``Last-Event-ID`` by the browser's EventSource, or ``?after=`` here where ids are log
 * indexes). ``onStatus("live" | "connecting" | "stale")``: "stale" once no event or
 * keep-alive has arrived for ``staleAfterMs`` or the connection is down.
 */
export function subscribe(url, handlers, { staleAfterMs = 20000, onStatus = setConnStatus } = {}) {
  let source = null;
  let delay = 500;
  let lastSeen = 0;
  let closed = false;
  let timer = null;
  const touch = () => {
    lastSeen = Date.now();
    onStatus("live");
  };
  const watchdog = setInterval(() => {
    if (!closed && Date.now() - lastSeen > staleAfterMs) onStatus("stale");
  }, 1000);
  function open() {
    if (closed) return;
    onStatus(lastSeen ? "stale" : "connecting");
    source = new EventSource(typeof url === "function" ? url() : url);
    source.onopen = () => {
      delay = 500;
      touch();
    };
    source.onmessage = touch;
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (ev) => {
        touch();
        let data = ev.data;
        try {
          data = JSON.parse(ev.data);
        } catch {
          /* a plain-text event */
        }
        fn(data, ev);
      });
    }
    source.addEventListener("keep-alive", touch);
    source.onerror = () => {
      source.close();
      onStatus("stale");
      const wait = Math.min(delay, 15000) * (0.75 + Math.random() * 0.5);
      delay = Math.min(delay * 2, 15000);
      timer = setTimeout(open, wait);
    };
  }
  open();
  return {
    close() {
      closed = true;
      clearInterval(watchdog);
      clearTimeout(timer);
      if (source) source.close();
    },
  };
}

/** The connection marker in the page header (``<span class="conn" id="conn">``). */
export function setConnStatus(state) {
  const node = document.getElementById("conn");
  if (!node) return;
  node.dataset.state = state;
  node.textContent = state === "live" ? "live" : state === "stale" ? "stale — reconnecting" : "connecting…";
  node.setAttribute("title", state === "stale" ? "The live stream dropped; what is shown may be out of date." : "");
}

/** SHA-256 hex of bytes (WebCrypto). */
export async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}
