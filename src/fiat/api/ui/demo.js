// The runtime governance demo (/ui/demo): launch a scenario (a real `fiat run` on the server),
// watch its timeline live over /v1/demo/stream, revoke it and watch it halt.
// The server side is fiat/api/routes/demo.py and fiat/demo_runs.py (what each event means).
import { h, api, subscribe, adminToken, ApiError, fmtTime, short } from "/ui/assets/common.js";

const runsNode = document.getElementById("runs");
const noRuns = document.getElementById("no-runs");
const notice = document.getElementById("notice");
const modeNode = document.getElementById("mode");
const tokenForm = document.getElementById("token-form");
const tokenInput = document.getElementById("token");

let controls = "admin-token"; // or "demo-home": GET /v1/demo/scenarios says which applies
/** runId → { node, timeline, state, revoke, lastSeq, heartbeat (the li being updated), checks, permitId, output } */
const runs = new Map();

function say(text, kind = "") {
  notice.hidden = false;
  notice.className = `notice ${kind}`;
  notice.textContent = text;
}


function showMode() {
  if (controls === "demo-home") {
    modeNode.textContent = "Demo home: the controls need no credential here (this server's fiat.toml sets [ui] demo_controls = true). Revoking works on the runs launched from this page only.";
    modeNode.className = "notice ok";
    tokenForm.hidden = true;
  } else {
    const have = adminToken.get() !== "";
    modeNode.textContent = have
      ? "Admin: launching and revoking use the admin token you entered (kept for this tab only)."
      : "Admin only: this server is not a demo home, so launching and revoking need the admin bearer token.";
    modeNode.className = have ? "notice ok" : "notice";
    tokenForm.hidden = false;
  }
}

tokenForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  adminToken.set(tokenInput.value.trim());
  tokenInput.value = "";
  showMode();
  say(adminToken.get() ? "Admin token set for this tab." : "Admin token cleared.");
});

async function launch(scenario, button) {
  button.disabled = true;
  try {
    const res = await api("/v1/demo/runs", { method: "POST", body: { scenario: scenario.name }, admin: controls === "admin-token" });
    say(`Launched ${scenario.title} as ${res.runId} (process ${res.pid}).`, "ok");
  } catch (err) {
    say(`Not launched: ${err.message}`, "bad");
  } finally {
    button.disabled = false;
  }
}

async function revoke(runId, button) {
  button.disabled = true;
  try {
    const res = await api(`/v1/demo/runs/${encodeURIComponent(runId)}/revoke`, { method: "POST", admin: controls === "admin-token" });
    say(`Revoked permit ${res.permitId} (log index ${res.logIndex}); the guard halts the run at its next check.`, "ok");
  } catch (err) {
    button.disabled = false;
    say(`Not revoked: ${err.message}`, "bad");
  }
}

function scenarioCard(s) {
  const button = h("button", { type: "button", class: "primary", "data-scenario": s.name, "aria-label": `Launch: ${s.title}` }, "Launch");
  button.addEventListener("click", () => launch(s, button));
  return h(
    "li",
    {},
    h("h3", {}, s.title),
    h("p", { class: "mono" }, `${s.principal} · ${s.action} · ${s.resource}`),
    h("p", { class: "muted" }, s.shows),
    button,
  );
}

function stamp(ev) {
  return h("span", { class: "when" }, fmtTime(ev.time).slice(11) + "." + String(Math.round((ev.time % 1) * 1000)).padStart(3, "0"));
}

function checkList(checks, failedStep) {
  const items = [];
  let reached = true;
  for (const c of checks) {
    if (c === failedStep) {
      items.push(h("li", { class: "failed", "data-check": c, "aria-label": `${c}: failed` }, `✗ ${c}`));
      reached = false;
    } else if (reached) {
      items.push(h("li", { class: "pass", "data-check": c, "aria-label": `${c}: held` }, `✓ ${c}`));
    } else {
      items.push(h("li", { class: "not-reached", "data-check": c, "aria-label": `${c}: not reached` }, c));
    }
  }
  if (failedStep && !checks.includes(failedStep)) {
    items.push(h("li", { class: "failed", "data-check": failedStep, "aria-label": `${failedStep}: failed` }, `✗ ${failedStep}`));
  }
  return h("ul", { class: "checks" }, items);
}

function runCard(ev) {
  const state = h("span", { class: "state badge", "data-state": "running" }, "running");
  const revokeButton = h("button", { type: "button", class: "danger revoke", "aria-label": `Revoke the permit of ${ev.runId}`, disabled: true }, "Revoke");
  revokeButton.addEventListener("click", () => revoke(ev.runId, revokeButton));
  const permit = h("code", { class: "permit" }, "no permit yet");
  const timeline = h("ol", { class: "timeline", "aria-label": `Timeline of ${ev.runId}` });
  const outputPre = h("pre", {});
  const outputSummary = h("summary", {}, "Output (0 lines)");
  const output = h("details", { class: "output" }, outputSummary, outputPre);
  const title = ev.title || ev.scenario;
  const node = h(
    "article",
    { class: "run", "data-run-id": ev.runId, "data-scenario": ev.scenario, "aria-label": `${title} (${ev.runId})` },
    h("header", {}, h("h3", {}, title), h("code", {}, ev.runId), state, h("span", {}, "permit ", permit), revokeButton),
    ev.principal ? h("p", { class: "muted mono" }, `${ev.principal} · ${ev.action} · ${ev.resource}`) : null,
    timeline,
    output,
  );
  runsNode.prepend(node);
  noRuns.hidden = true;
  const run = { node, timeline, state, revokeButton, permit, lastSeq: 0, heartbeat: null, checks: [], outputPre, outputSummary, lines: 0, ended: false };
  runs.set(ev.runId, run);
  return run;
}

function setState(run, value, label = value) {
  run.state.dataset.state = value;
  run.state.textContent = label;
}

/** Children with a space between each (the text reads right to a screen reader and in a copy). */
const spaced = (...children) => children.filter((c) => c !== null && c !== "").flatMap((c, i) => (i ? [" ", c] : [c]));

function item(run, ev, ...children) {
  const li = h("li", { "data-phase": ev.phase, "data-seq": ev.seq }, ...spaced(stamp(ev), ...children));
  run.timeline.append(li);
  return li;
}

function onRun(ev) {
  if (!ev || !ev.runId) return;
  let run = runs.get(ev.runId);
  if (!run) run = runCard(ev);
  if (ev.seq <= run.lastSeq) return; // heard twice: from the replay and the stream
  run.lastSeq = ev.seq;
  if (ev.permitId) {
    run.permit.textContent = ev.permitId;
    run.permit.title = ev.permitId;
  }
  if (ev.phase !== "heartbeat" && ev.phase !== "output") run.heartbeat = null; // output lines do not break a run of beats
  switch (ev.phase) {
    case "started":
      item(run, ev, h("span", { class: "what" }, "Started"), `fiat run, process ${ev.pid}`);
      break;
    case "permit":
      item(run, ev, h("span", { class: "what" }, "Permit established"), h("code", {}, ev.permitId), ` — expires ${fmtTime(ev.exp)}, heartbeat every ${ev.heartbeatMs} ms`);
      if (!run.ended) run.revokeButton.disabled = false;
      break;
    case "approval":
      item(run, ev, h("span", { class: "what" }, "Waiting for an approval"), h("code", {}, ev.approvalId));
      break;
    case "heartbeat": {
      run.checks = ev.checks || run.checks;
      if (!run.heartbeat) {
        run.heartbeat = item(run, ev);
        run.heartbeat.count = 0;
      }
      const li = run.heartbeat;
      li.count += 1;
      li.replaceChildren(
        ...spaced(
          stamp(ev),
          h("span", { class: "what" }, `Heartbeat #${ev.n} verified`),
          li.count > 1 ? h("span", { class: "muted count" }, `(${li.count} in a row)`) : null,
          checkList(run.checks, null),
        ),
      );
      li.dataset.seq = ev.seq;
      break;
    }
    case "renewal":
      item(run, ev, h("span", { class: "what" }, "Renewed"), h("code", {}, short(ev.renews, 16)), " → ", h("code", {}, ev.permitId), ` (expires ${fmtTime(ev.exp)})`);
      break;
    case "revoked":
      item(run, ev, h("span", { class: "what" }, "Revoked from this page"), "permit ", h("code", {}, ev.revokedPermit), ` — revocation at log index ${ev.logIndex}, pushed on the trust stream`);
      break;
    case "halt":
      item(run, ev, h("span", { class: "what" }, "Halted at"), h("strong", { class: "halted step" }, ev.step), `— ${ev.reason}`, h("div", {}, checkList(run.checks.length ? run.checks : [ev.step], ev.step)));
      setState(run, "halted", `halted at ${ev.step}`);
      run.revokeButton.disabled = true;
      break;
    case "receipt":
      item(run, ev, h("span", { class: "what" }, "Receipt logged"), `at log index ${ev.logIndex} —`, h("a", { href: `/ui/verify#${encodeURIComponent(ev.permitId || "")}`, class: "verify-link" }, "verify in browser"));
      break;
    case "output":
      run.lines += 1;
      run.outputPre.append(document.createTextNode((ev.source === "fiat" ? "" : "│ ") + ev.text + "\n"));
      run.outputSummary.textContent = `Output (${run.lines} line${run.lines === 1 ? "" : "s"})`;
      break;
    case "exit": {
      run.ended = true;
      run.revokeButton.disabled = true;
      run.revokeButton.hidden = true;
      const latency = ev.haltLatencyMs != null ? `, command gone ${ev.haltLatencyMs} ms after the halting check` : "";
      item(run, ev, h("span", { class: "what" }, `Exited: ${ev.outcome}`), `code ${ev.exitCode}${latency} — ${ev.reason}`);
      if (ev.outcome !== "halted" || run.state.dataset.state !== "halted") setState(run, ev.outcome || "error");
      break;
    }
    default:
      break;
  }
}

async function reload() {
  // The stream said this page fell behind: re-read every run from the server.
  const data = await api("/v1/demo/runs");
  for (const r of data.runs) for (const ev of r.events) onRun(ev);
}

async function start() {
  try {
    const data = await api("/v1/demo/scenarios");
    controls = data.controls;
    document.getElementById("scenarios").replaceChildren(...data.scenarios.map(scenarioCard));
  } catch (err) {
    say(`Cannot read the scenarios: ${err instanceof ApiError ? err.message : err}`, "bad");
  }
  showMode();
  subscribe("/v1/demo/stream", {
    run: onRun,
    overflow: () => reload().catch((err) => say(`Cannot re-read the runs: ${err.message}`, "bad")),
    "going-away": () => say("The server is shutting down: its demo runs are being ended.", "bad"),
  });
}

start();
