// The health page: polls GET /v1/health every 2 s and draws its series as hand-drawn SVG charts
// (no chart library). Each chart has an SVG <title>/<desc> and a visually-hidden text summary.
import { api, fmtTime, h, setConnStatus, short } from "/ui/assets/common.js";

const POLL_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const W = 600, H = 160, PAD_L = 48, PAD_R = 8, PAD_T = 8, PAD_B = 20;

const CHARTS = [
  { id: "log", title: "Log size", unit: "entries", series: [["logSize", "entries"]] },
  { id: "rate", title: "Authorizations per second", unit: "/s", series: [["authorizationsPerS", "authorizations/s"]] },
  { id: "authlat", title: "Authorization latency", unit: "ms", ms: true, series: [["authorizeP50S", "p50"], ["authorizeP99S", "p99"]] },
  { id: "intlat", title: "Log integration latency", unit: "ms", ms: true, series: [["integrationP50S", "p50"], ["integrationP99S", "p99"]] },
  { id: "bad", title: "Denials and halts per interval", unit: "", series: [["denials", "denials"], ["haltCount", "halts"]] },
  { id: "subs", title: "Trust-stream subscribers", unit: "", series: [["subscribers", "streams"]] },
];

const windowSelect = document.getElementById("window");
let timer = null;
let inFlight = false;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function fmtNum(v, ms) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  const x = ms ? v * 1000 : v;
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en");
  if (Math.abs(x) >= 10) return x.toFixed(1);
  return x.toFixed(x === Math.round(x) ? 0 : 2);
}

function buildCharts() {
  const root = document.getElementById("charts");
  for (const c of CHARTS) {
    const titleId = `chart-${c.id}-title`, descId = `chart-${c.id}-desc`;
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-labelledby": `${titleId} ${descId}`, id: `chart-${c.id}` });
    s.append(svg("title", { id: titleId }, c.title), svg("desc", { id: descId }, "No samples yet."));
    const legend = h("div", { class: "legend", "aria-hidden": "true" },
      c.series.map(([, label], i) => h("span", { class: `k${i}` }, `■ ${label}${c.unit ? ` (${c.unit})` : ""} `)));
    root.append(h("figure", { class: "chart", id: `fig-${c.id}` },
      h("figcaption", {}, c.title), s, legend, h("p", { class: "sr-only", id: `summary-${c.id}` }, "No samples yet.")));
  }
}

function drawChart(c, samples, span, now) {
  const s = document.getElementById(`chart-${c.id}`);
  for (const node of [...s.querySelectorAll("g")]) node.remove();
  const g = svg("g");
  const values = c.series.flatMap(([key]) => samples.map((p) => p[key]).filter((v) => Number.isFinite(v)));
  const max = Math.max(1e-9, ...values);
  const top = c.ms ? max : Math.max(1, max);
  const x = (t) => PAD_L + ((t - (now - span)) / span) * (W - PAD_L - PAD_R);
  const y = (v) => PAD_T + (1 - v / top) * (H - PAD_T - PAD_B);
  g.append(svg("line", { class: "axis", x1: PAD_L, y1: H - PAD_B, x2: W - PAD_R, y2: H - PAD_B }));
  g.append(svg("line", { class: "axis", x1: PAD_L, y1: PAD_T, x2: PAD_L, y2: H - PAD_B }));
  g.append(svg("text", { class: "tick", x: 2, y: PAD_T + 8 }, fmtNum(top, c.ms)));
  g.append(svg("text", { class: "tick", x: 2, y: H - PAD_B }, "0"));
  g.append(svg("text", { class: "tick", x: PAD_L, y: H - 4 }, `−${Math.round(span / 60)} min`));
  g.append(svg("text", { class: "tick", x: W - PAD_R - 24, y: H - 4 }, "now"));
  c.series.forEach(([key], i) => {
    const pts = samples.filter((p) => Number.isFinite(p[key])).map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`);
    if (pts.length) g.append(svg("polyline", { class: `s${i} line`, points: pts.join(" "), "data-points": pts.length }));
  });
  s.append(g);
  const parts = c.series.map(([key, label]) => {
    const vs = samples.map((p) => p[key]).filter((v) => Number.isFinite(v));
    if (!vs.length) return `${label}: no data`;
    return `${label}: latest ${fmtNum(vs[vs.length - 1], c.ms)}, min ${fmtNum(Math.min(...vs), c.ms)}, max ${fmtNum(Math.max(...vs), c.ms)}${c.unit ? " " + c.unit : ""}`;
  });
  const text = `${c.title} over the last ${Math.round(span / 60)} minutes, ${samples.length} samples. ${parts.join("; ")}.`;
  s.querySelector("desc").textContent = text;
  document.getElementById(`summary-${c.id}`).textContent = text;
}

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function render(doc) {
  const samples = doc.samples.map((p) => ({ ...p, haltCount: Object.values(p.halts || {}).reduce((a, b) => a + b, 0) }));
  const span = Number(doc.windowS);
  for (const c of CHARTS) drawChart(c, samples, span, doc.now);
  const last = samples[samples.length - 1];
  setText("tile-log", doc.logSize.toLocaleString("en"));
  setText("tile-log-growth", samples.length > 1 ? `+${(doc.logSize - samples[0].logSize).toLocaleString("en")} in the window` : "");
  setText("tile-rate", last ? fmtNum(last.authorizationsPerS) : "—");
  setText("tile-latency", last && last.authorizeP50S !== null ? `p50 ${fmtNum(last.authorizeP50S, true)} ms · p99 ${fmtNum(last.authorizeP99S, true)} ms` : "no authorizations in the last interval");
  setText("tile-denials", samples.reduce((a, p) => a + p.denials, 0).toLocaleString("en"));
  const halts = {};
  for (const p of samples) for (const [k, v] of Object.entries(p.halts || {})) halts[k] = (halts[k] || 0) + v;
  setText("tile-halts", Object.values(halts).reduce((a, b) => a + b, 0).toLocaleString("en"));
  setText("tile-halt-reasons", Object.entries(halts).map(([k, v]) => `${k}: ${v}`).join(" · "));
  const integ = samples.map((p) => p.integrationP99S).filter((v) => Number.isFinite(v));
  setText("tile-integration", integ.length ? `${fmtNum(integ[integ.length - 1], true)} ms` : "—");
  setText("tile-subscribers", String(doc.runtimes.length));
  setText("tile-epoch", `trust epoch ${doc.trustEpoch}`);
  setText("tile-spool", String(doc.spoolBacklog));
  setText("updated", `updated ${fmtTime(doc.now)}`);

  const tbody = document.querySelector("#runtimes tbody");
  const bound = doc.freshnessBoundS;
  tbody.replaceChildren(...(doc.runtimes.length ? doc.runtimes.map((r) => {
    const stale = r.freshnessS === null || (bound !== null && r.freshnessS > bound);
    return h("tr", { "data-runtime": r.runtime },
      h("td", { title: r.runtime }, short(r.runtime, 24), r.runtime === "anonymous" ? h("span", { class: "muted" }, " (did not name itself)") : ""),
      h("td", {}, fmtTime(r.connectedSince)),
      h("td", { class: stale ? "stale freshness" : "fresh freshness", title: bound !== null ? `bound: ${bound} s (runtime.staleness_ms of this server)` : "" },
        r.freshnessS === null ? "no state sent yet" : `${r.freshnessS.toFixed(1)} s ago${stale ? " — beyond the freshness bound" : ""}`),
      h("td", {}, String(r.statesDelivered)),
      h("td", {}, r.spoolBacklog === null ? "not reported" : String(r.spoolBacklog)));
  }) : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No trust streams are open."))]));

  const w = doc.witnesses;
  setText("witnesses", w.note);
  document.getElementById("cosigners").replaceChildren(...w.cosigners.map((c) => h("li", {},
    `${c.name} (key ${c.keyId})`,
    c.verified === undefined ? h("span", { class: "muted" }, " — not verified here")
      : c.verified ? ` — ✓ verified, cosigned ${fmtTime(c.time)}` : h("span", { class: "stale" }, " — ✗ does not verify under the witness's key"))));
  const statuses = w.witnesses || [];
  document.querySelector("#witness-status tbody").replaceChildren(...(statuses.length ? statuses.map((s) =>
    h("tr", {},
      h("td", { title: s.url }, s.name),
      h("td", {}, s.cosignedSize === null ? "none yet" : String(s.cosignedSize)),
      h("td", {}, s.cosignatureTime === null ? "never" : fmtTime(s.cosignatureTime)),
      h("td", {}, `${s.submissions} (${s.failures})`),
      h("td", { class: s.lastError ? "stale" : "" }, s.lastError ? `${s.lastError} (${fmtTime(s.lastErrorAt)})` : "none")))
    : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "The log submits to no witness (no witness key has a url)."))]));
}

async function poll() {
  if (inFlight) return;
  inFlight = true;
  try {
    const doc = await api(`/v1/health?window=${encodeURIComponent(windowSelect.value)}`);
    render(doc);
    setConnStatus("live");
  } catch (err) {
    setConnStatus("stale");
  } finally {
    inFlight = false;
  }
}

buildCharts();
setConnStatus("connecting");
windowSelect.addEventListener("change", () => poll());
poll();
timer = setInterval(poll, POLL_MS);
window.addEventListener("pagehide", () => clearInterval(timer));
