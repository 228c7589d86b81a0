// The lineage explorer (/ui/lineage): search permits, draw their lineage DAG as hand-made SVG,
// show a selected node's evidence. Reads only the public lineage API (GET /v1/lineage,
// GET /v1/lineage/{jti}/node); the bundle itself is fetched by the proof viewer (/ui/verify#<jti>)
// with the admin token. The URL hash keeps the selection: #permit=<jti>.
import { api, h } from "/ui/assets/common.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const NODE_W = 200;
const NODE_H = 58;
const GAP_X = 36;
const GAP_Y = 64;
const PAD = 20;

const state = { nodes: new Map(), edges: [], order: [], pos: new Map(), layers: new Map(), selected: null, matches: new Set(), searches: 0 };

const $ = (id) => document.getElementById(id);

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function clip(text, n) {
  const s = String(text ?? "");
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

function setStatus(text, bad = false) {
  const node = $("status");
  node.textContent = text;
  node.className = bad ? "notice bad" : "muted";
}

// -- the hash: #permit=<jti> ---------------------------------------------------------------

function hashPermit() {
  const params = new URLSearchParams(location.hash.slice(1));
  const jti = params.get("permit");
  return jti ? jti : null;
}

function setHash(jti) {
  if (jti) {
    const want = `#permit=${encodeURIComponent(jti)}`;
    if (location.hash !== want) history.replaceState(null, "", want);
  } else if (location.hash) {
    history.replaceState(null, "", location.pathname + location.search);
  }
}

// -- search ----------------------------------------------------------------------------------

function rfc3339(localValue) {
  if (!localValue) return null;
  const d = new Date(localValue);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function searchQuery() {
  const permit = $("permit").value.trim();
  if (permit) return new URLSearchParams({ permit });
  const q = new URLSearchParams();
  const principal = $("principal").value.trim();
  if (principal) q.set("principal", principal);
  for (const name of ["since", "until"]) {
    const t = rfc3339($(name).value);
    if (t === undefined) throw new Error(`"${name}" is not a date and time`);
    if (t) q.set(name, t);
  }
  if (q.has("since") && q.has("until") && q.get("since") > q.get("until")) {
    throw new Error("The time range is empty: since is after until. Put the earlier time first.");
  }
  const limit = $("limit").value.trim();
  if (limit && !(/^\d+$/.test(limit) && Number(limit) >= 1 && Number(limit) <= 500)) {
    throw new Error("Newest matches must be a whole number from 1 to 500.");
  }
  if (limit) q.set("limit", limit);
  return q;
}

async function search(selectAfter = null) {
  let q;
  try {
    q = searchQuery();
  } catch (err) {
    setStatus(err.message, true);
    return;
  }
  setStatus("Searching…");
  const seq = ++state.searches; // answers can arrive out of order: only the newest search's is shown
  try {
    const dag = await api(`/v1/lineage?${q}`);
    if (seq !== state.searches) return;
    load(dag);
    const n = dag.nodes.length;
    const what = q.has("permit") ? `the lineage of ${q.get("permit")}` : `${dag.matches.length} matching permit${dag.matches.length === 1 ? "" : "s"} and their lineages`;
    setStatus(n ? `${n} permit${n === 1 ? "" : "s"}, ${dag.edges.length} link${dag.edges.length === 1 ? "" : "s"}: ${what}${dag.truncated ? " (truncated: narrow the search)" : ""}.` : "No permit matches this search.");
    const keep = selectAfter ?? state.selected;
    if (keep && state.nodes.has(keep)) await select(keep, { focus: false });
    else clearDetails();
  } catch (err) {
    if (seq !== state.searches) return;
    load({ nodes: [], edges: [], matches: [] });
    clearDetails();
    setStatus(`The search failed: ${err.message}`, true);
  }
}

// -- layout and drawing ----------------------------------------------------------------------------

function load(dag) {
  state.nodes = new Map(dag.nodes.map((n) => [n.id, n]));
  state.edges = dag.edges;
  state.matches = new Set(dag.matches || []);
  layout();
  draw();
}

/** Layered by depth; within a layer, depth-first from the roots so that sub-executions start under
 *  their parent and a renewal sits beside the permit it renewed. */
function layout() {
  const out = new Map();
  const incoming = new Set();
  for (const e of state.edges) {
    if (!out.has(e.from)) out.set(e.from, []);
    out.get(e.from).push(e);
    incoming.add(e.to);
  }
  const logOrder = (a, b) => state.nodes.get(a.to).logIndex - state.nodes.get(b.to).logIndex;
  for (const list of out.values()) list.sort((a, b) => (a.kind === b.kind ? logOrder(a, b) : a.kind === "renewal" ? -1 : 1));
  const nextFree = new Map();
  const pos = new Map();
  const place = (id, hint) => {
    if (pos.has(id)) return;
    const node = state.nodes.get(id);
    const layer = node.depth;
    const col = Math.max(nextFree.get(layer) ?? 0, hint);
    nextFree.set(layer, col + 1);
    pos.set(id, { col, layer });
    for (const e of out.get(id) || []) place(e.to, e.kind === "renewal" ? col + 1 : col);
  };
  const nodes = [...state.nodes.values()].sort((a, b) => a.logIndex - b.logIndex);
  for (const n of nodes) if (!incoming.has(n.id)) place(n.id, 0);
  for (const n of nodes) place(n.id, 0); // a loop (a corrupt graph) still shows every node
  state.pos = pos;
  state.layers = new Map();
  for (const [id, p] of pos) {
    if (!state.layers.has(p.layer)) state.layers.set(p.layer, []);
    state.layers.get(p.layer).push(id);
  }
  for (const ids of state.layers.values()) ids.sort((a, b) => pos.get(a).col - pos.get(b).col);
  state.order = [...pos.keys()].sort((a, b) => pos.get(a).layer - pos.get(b).layer || pos.get(a).col - pos.get(b).col);
}

function xy(id) {
  const p = state.pos.get(id);
  const layers = [...state.layers.keys()];
  const top = layers.length ? Math.min(...layers) : 0;
  return { x: PAD + p.col * (NODE_W + GAP_X), y: PAD + (p.layer - top) * (NODE_H + GAP_Y) };
}

function edgePath(e) {
  const a = xy(e.from);
  const b = xy(e.to);
  if (e.kind === "renewal" && a.y === b.y) {
    const x1 = a.x + NODE_W;
    const y = a.y + NODE_H / 2;
    return b.x >= x1 ? `M${x1},${y} L${b.x - 2},${y}` : `M${a.x + NODE_W / 2},${a.y + NODE_H} C${a.x + NODE_W / 2},${a.y + NODE_H + 30} ${b.x + NODE_W / 2},${b.y + NODE_H + 30} ${b.x + NODE_W / 2},${b.y + NODE_H + 2}`;
  }
  const x1 = a.x + NODE_W / 2;
  const y1 = a.y + NODE_H;
  const x2 = b.x + NODE_W / 2;
  const y2 = b.y - 2;
  const my = (y1 + y2) / 2;
  return `M${x1},${y1} C${x1},${my} ${x2},${my} ${x2},${y2}`;
}

function nodeLabel(n) {
  const what = [n.action, n.resource].filter(Boolean).join(" on ");
  return `${n.principal}, ${n.state}${what ? `, ${what}` : ""}, depth ${n.depth}, permit ${n.id}`;
}

function draw() {
  const box = $("graph");
  box.replaceChildren();
  if (!state.nodes.size) {
    box.append(h("p", { class: "muted empty" }, "Nothing to draw: search by principal, permit id or time."));
    return;
  }
  const cols = Math.max(...[...state.pos.values()].map((p) => p.col)) + 1;
  const rows = state.layers.size;
  const width = PAD * 2 + cols * NODE_W + (cols - 1) * GAP_X;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y + 30;
  const parents = state.edges.filter((e) => e.kind === "parent").length;
  const renewals = state.edges.length - parents;
  const root = svg("svg", {
    id: "dag",
    width,
    height,
    viewBox: `0 0 ${width} ${height}`,
    role: "group",
    "aria-label": `Lineage graph: ${state.nodes.size} permits, ${parents} sub-execution links, ${renewals} renewal links`,
    "aria-describedby": "graph-help",
  });
  root.append(
    svg(
      "defs",
      {},
      ["parent", "renewal"].map((kind) =>
        svg("marker", { id: `arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, svg("path", { d: "M0,0 L10,5 L0,10 z", class: `arrow ${kind}` })),
      ),
    ),
  );
  const edges = svg("g", { class: "edges", "aria-hidden": "true" });
  for (const e of state.edges) {
    if (!state.pos.has(e.from) || !state.pos.has(e.to)) continue;
    edges.append(svg("path", { class: `edge ${e.kind}`, d: edgePath(e), "marker-end": `url(#arrow-${e.kind})`, "data-from": e.from, "data-to": e.to }));
  }
  root.append(edges);
  const nodes = svg("g", { class: "nodes" });
  for (const id of state.order) {
    const n = state.nodes.get(id);
    const { x, y } = xy(id);
    const classes = ["node", `state-${n.state}`];
    if (state.matches.has(id)) classes.push("match");
    const g = svg(
      "g",
      { class: classes.join(" "), transform: `translate(${x},${y})`, tabindex: 0, role: "button", "aria-pressed": "false", "aria-label": nodeLabel(n), "data-id": id, "data-depth": n.depth, "data-state": n.state },
      svg("rect", { width: NODE_W, height: NODE_H, rx: 6, ry: 6 }),
      svg("text", { x: 10, y: 18 }, clip(n.principal, 22)),
      svg("text", { x: NODE_W - 8, y: 18, class: "state", "text-anchor": "end" }, n.state),
      svg("text", { x: 10, y: 34, class: "sub" }, clip(`${n.action ?? ""} ${n.resource ?? ""}`.trim(), 30)),
      svg("text", { x: 10, y: 50, class: "sub mono" }, clip(n.id, 28)),
    );
    g.addEventListener("click", () => select(id));
    g.addEventListener("keydown", (ev) => onKey(ev, id));
    nodes.append(g);
  }
  root.append(nodes);
  box.append(root);
  markSelected();
}

function nodeElement(id) {
  return [...document.querySelectorAll("#dag g.node")].find((g) => g.dataset.id === id) || null;
}

function markSelected() {
  for (const g of document.querySelectorAll("#dag g.node")) {
    const on = g.dataset.id === state.selected;
    g.classList.toggle("selected", on);
    g.setAttribute("aria-pressed", on ? "true" : "false");
  }
}

// -- keyboard ------------------------------------------------------------------------------------

function neighbour(id, key) {
  const n = state.nodes.get(id);
  if (key === "ArrowUp") {
    if (n.parent && state.nodes.has(n.parent)) return n.parent;
    return n.renewedFrom && state.nodes.has(n.renewedFrom) ? n.renewedFrom : null;
  }
  if (key === "ArrowDown") {
    const child = state.edges.find((e) => e.from === id && e.kind === "parent");
    if (child) return child.to;
    return n.renewedBy && state.nodes.has(n.renewedBy) ? n.renewedBy : null;
  }
  const layer = state.layers.get(state.pos.get(id).layer);
  const i = layer.indexOf(id);
  if (key === "ArrowLeft") return i > 0 ? layer[i - 1] : null;
  if (key === "ArrowRight") return i < layer.length - 1 ? layer[i + 1] : null;
  if (key === "Home") return state.order[0];
  if (key === "End") return state.order[state.order.length - 1];
  return null;
}

function onKey(ev, id) {
  if (ev.key === "Enter" || ev.key === " ") {
    ev.preventDefault();
    select(id);
    return;
  }
  if (["ArrowUp", "ArrowDown", "ArrowLeft", "ArrowRight", "Home", "End"].includes(ev.key)) {
    ev.preventDefault();
    const to = neighbour(id, ev.key);
    if (to) nodeElement(to)?.focus();
  }
}

// -- details -------------------------------------------------------------------------------------

function clearDetails() {
  state.selected = null;
  markSelected();
  $("details-empty").hidden = false;
  $("details-body").replaceChildren();
  setHash(null);
}

function dl(rows) {
  return h("dl", {}, rows.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

function permitLink(jti) {
  if (!jti) return "—";
  if (!state.nodes.has(jti)) return h("code", {}, jti);
  return h("a", { href: `#permit=${encodeURIComponent(jti)}`, class: "mono", onclick: (ev) => (ev.preventDefault(), select(jti)) }, jti);
}

function badge(text) {
  return text ? h("span", { class: `badge ${text}` }, text) : "—";
}

async function select(id, { focus = false } = {}) {
  state.selected = id;
  markSelected();
  setHash(id);
  if (focus) nodeElement(id)?.focus();
  const body = $("details-body");
  $("details-empty").hidden = true;
  body.replaceChildren(h("p", { class: "muted" }, "Loading the evidence…"));
  let d;
  try {
    d = await api(`/v1/lineage/${encodeURIComponent(id)}/node`);
  } catch (err) {
    body.replaceChildren(h("p", { class: "notice bad" }, `The evidence of ${id} could not be read: ${err.message}`));
    return;
  }
  if (state.selected !== id) return; // another node was selected meanwhile
  const n = state.nodes.get(id) || {};
  const c = d.claims || {};
  const dec = d.decision?.predicate;
  const rec = d.receipt?.predicate;
  const delegation = c.delegation || {};
  body.replaceChildren(
    h("p", {}, h("a", { href: d.verify, class: "verify-link", id: "verify-link" }, "Verify in browser"), " ", h("span", { class: "muted" }, `— the proof viewer fetches this execution's bundle (${d.bundle}) with the admin token and checks it offline.`)),
    h("h3", {}, "Permit"),
    dl([
      ["Permit id", h("code", {}, d.id)],
      ["State", badge(d.state)],
      ["Principal", d.request?.principal],
      ["Action", d.request?.action],
      ["Resource", d.request?.resource],
      ["Issued", n.iat],
      ["Expires", n.exp],
      ["Depth", String(delegation.depth ?? n.depth ?? 0)],
      ["Runtime", h("code", {}, n.runtime ?? "—")],
      ["Parent", permitLink(c.parent)],
      ["Renews", permitLink(c.renews)],
      ["Renewed by", permitLink(d.renewedBy)],
      ["Sub-executions", d.children.length ? h("span", {}, d.children.flatMap((j, i) => (i ? [", ", permitLink(j)] : [permitLink(j)]))) : "none"],
      ["Log index", `${d.permit.logIndex}${d.permit.proofAvailable ? "" : " (no inclusion proof yet)"}`],
    ]),
    h("h3", {}, "Decision"),
    dec
      ? dl([
          ["Decision", badge(dec.decision)],
          ["Reason", dec.reason],
          ["Determining policies", (dec.policy?.determining || []).join(", ") || "—"],
          ["Policy version", dec.policy?.version == null ? "—" : String(dec.policy.version)],
          ["Time", dec.time],
          ["Log index", String(d.decision.logIndex)],
        ])
      : h("p", { class: "muted" }, "No decision is indexed under this permit."),
    h("h3", {}, "Approvals"),
    d.approvals.length
      ? h(
          "table",
          { id: "approvals" },
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Approval"), h("th", { scope: "col" }, "Decision"), h("th", { scope: "col" }, "Approver"), h("th", { scope: "col" }, "Log index"))),
          h("tbody", {}, d.approvals.map((a) => h("tr", {}, h("td", { class: "mono" }, a.predicate.id), h("td", {}, badge(a.predicate.decision)), h("td", {}, a.predicate.approver), h("td", {}, String(a.logIndex))))),
        )
      : h("p", { class: "muted" }, "None: the decision needed no human approval."),
    h("h3", {}, "Receipt"),
    rec
      ? dl([
          ["Outcome", badge(rec.outcome)],
          ["Halt reason", rec.haltReason ?? "—"],
          ["Exit code", rec.exitCode == null ? "—" : String(rec.exitCode)],
          ["Start", rec.start],
          ["End", rec.end],
          ["Verifications", rec.verifications?.count == null ? "—" : `${rec.verifications.count} (chain ${String(rec.verifications.chain?.sha256 ?? "").slice(0, 16)}…)`],
          ["Containment", rec.containment ?? "—"],
          ["Renewed from", rec.renewedFrom?.length ? rec.renewedFrom.join(", ") : "—"],
          ["Log index", String(d.receipt.logIndex)],
        ])
      : h("p", { class: "muted" }, "No receipt yet: the execution is running, or it never reported."),
    h("h3", {}, "Log entries and proofs"),
    h(
      "table",
      { id: "entries" },
      h("caption", { class: "sr-only" }, `Log entries of permit ${d.id}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Entry"), h("th", { scope: "col" }, "Log index"), h("th", { scope: "col" }, "Inclusion proof"))),
      h("tbody", {}, d.entries.map((e) => h("tr", {}, h("td", {}, e.kind), h("td", {}, String(e.logIndex)), h("td", {}, e.proofAvailable ? `available (tree size ${d.treeSize})` : "after the next checkpoint")))),
    ),
    h("h3", {}, "Permit claims"),
    h("pre", { tabindex: 0, "aria-label": "Permit claims (JSON)" }, JSON.stringify(c, null, 2)),
  );
}

// -- start -------------------------------------------------------------------------------------------

async function fromHash() {
  const jti = hashPermit();
  if (!jti) return;
  if (state.nodes.has(jti)) {
    await select(jti);
    return;
  }
  $("permit").value = jti;
  await search(jti);
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    search();
  });
  $("clear").addEventListener("click", () => {
    for (const id of ["principal", "permit", "since", "until"]) $(id).value = "";
    $("limit").value = "20";
    search();
  });
  window.addEventListener("hashchange", fromHash);
  if (hashPermit()) fromHash();
  else search();
});
