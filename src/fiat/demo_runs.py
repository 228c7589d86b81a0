"""The demo's ``fiat run`` scenarios, and the runner that plays them for the demo page (``/ui/demo``).

:data:`SCENARIOS` is the one list of the governed executions the demo shows: ``fiat demo``
(:mod:`fiat.demo`) plays all of them in a row, and the server's :class:`DemoRunner` launches
the ones marked ``web`` when the page asks (``POST /v1/demo/runs``, :mod:`fiat.api.routes.demo`).

The runner starts a REAL ``fiat run`` child process for each launch — the same command line a
person would type, with ``FIAT_HOME`` the server's home and ``--url`` the server's public URL —
asking for structured logs at DEBUG (``--log-format json --log-level debug``), so that the guard
says every verification round (:meth:`fiat.enforce.guard.Session.check`: one record per
heartbeat with the checks that held, one per renewal, one per halt with its step and reason).
It reads every line the child writes and turns it into a ``run`` event
(:meth:`DemoRunner.publish` callback; the server publishes them on its event hub):

* ``started`` — the process is running (``pid``);
* ``permit`` — the permit is established (``permitId``, ``exp``, ``heartbeatMs``);
* ``approval`` — the request waits for a human approval (``approvalId``);
* ``heartbeat`` — one verification round held (``n``, ``checks``: the steps, as a halt names them);
* ``renewal`` — the permit was renewed (``permitId`` the new one, ``renews`` the old);
* ``halt`` — a check failed (``step``, ``reason``): the guard stops the command;
* ``receipt`` — the signed execution receipt is in the log (``logIndex``);
* ``output`` — a line the command (or ``fiat``) wrote, capped at :data:`MAX_OUTPUT_BYTES` a run;
* ``revoked`` — the demo page revoked this run's permit (``logIndex`` of the revocation);
* ``exit`` — ``fiat run`` ended (``outcome``, ``exitCode``, ``reason``, ``haltLatencyMs``).

Every event carries ``runId``, ``seq`` (its place in the run, from 1: a page that hears it
twice, from the replay and from the stream, keeps one), ``scenario``, ``phase``, ``time``
(Unix seconds) and ``permitId`` once known.

Bounds: at most :data:`MAX_RUNNING` runs at once (:class:`DemoBusy` beyond), the last
:data:`KEEP_RUNS` runs remembered, :data:`MAX_EVENTS` events stored a run (heartbeats beyond
that are still published but no longer stored). :meth:`DemoRunner.close` ends every run still
going (SIGTERM: the guard halts its command at ``signal`` and delivers the receipt; SIGKILL after
the grace period), so the server leaves no process behind.

Imports: the standard library and :mod:`fiat.errors` only (the HTTP layer imports this module).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fiat.errors import FiatError, NotFoundError

#: Runs going at once; a launch beyond is refused (:class:`DemoBusy`).
MAX_RUNNING = 4
#: Runs remembered (running or ended) for the page's replay.
KEEP_RUNS = 20
#: Events stored per run; beyond, heartbeats are published but not stored.
MAX_EVENTS = 1500
#: Bytes of output (the command's lines, fiat's own) published per run; then one truncation note.
MAX_OUTPUT_BYTES = 16 * 1024
#: How long a measured-file scenario waits after its permit before it changes the file.
TAMPER_AFTER_S = 1.0

PERMIT_RE = re.compile(r"permit (pmt_[A-Za-z0-9_-]+)")
APPROVAL_RE = re.compile(r"approval (apr_[A-Za-z0-9_-]+) pending")
HALT_RE = re.compile(r"halted at (?P<step>[a-z-]+): (?P<reason>.*)", re.S)

#: The command of the long scenarios: a job that says what it does, one step a second.
LONG_JOB = "import time\nfor i in range(1, 91):\n    print(f'job step {i} of 90', flush=True)\n    time.sleep(1)"


@dataclass(frozen=True)
class DemoScenario:
    """One governed execution of the demo: who does what to what, running which Python code."""

    name: str  # the identifier the page sends
    row: str  # its row in ``fiat demo``'s summary table
    title: str  # what the page calls it
    shows: str  # what it demonstrates
    principal: str
    action: str
    resource: str
    code: str  # the governed command: ``python -c CODE``
    context: Mapping[str, Any] = field(default_factory=dict)
    #: Runs long enough to be revoked from the page.
    long_running: bool = False
    #: A measured file (``runtime.files``) is changed under it once it runs.
    measured_file: bool = False
    #: The page offers it (the approval scenario needs an approver's key: ``fiat demo`` plays it).
    web: bool = True

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-c", self.code]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "shows": self.shows,
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "longRunning": self.long_running,
        }


SCENARIOS: tuple[DemoScenario, ...] = (
    DemoScenario(
        "allowed",
        "allowed, completed",
        "Allowed and completed",
        "Policy permits it: a permit, verified heartbeats, the command's own end, a receipt in the log.",
        "agent:release-bot",
        "shell:run",
        "repo:fiat",
        "print('built and tested')",
    ),
    DemoScenario(
        "denied",
        "denied by policy",
        "Denied by policy",
        "Policy forbids it: no permit, the command never starts (exit 125).",
        "agent:support-assistant",
        "shell:run",
        "repo:fiat",
        "print('should never run')",
    ),
    DemoScenario(
        "approval",
        "approval granted, completed",
        "Needs a human approval",
        "A critical deploy waits until an approver signs the approval, then runs.",
        "agent:release-bot",
        "deploy",
        "service:payments",
        "import time; time.sleep(0.5); print('deployed payments 2.4.0')",
        {"version": "2.4.0", "replicas": 4},
        web=False,
    ),
    DemoScenario(
        "long-job",
        "revoked mid-run, halted",
        "A long job: revoke it while it runs",
        "A 90-second job re-verified on every heartbeat; revoke its permit and the guard halts it "
        "at the revocation step, with a receipt saying so.",
        "agent:release-bot",
        "shell:run",
        "repo:fiat",
        LONG_JOB,
        long_running=True,
    ),
    DemoScenario(
        "file-changed",
        "file changed, halted",
        "A measured file changes under a running job",
        "The job's environment measurement includes a config file; it is changed a second after the "
        "start and the guard halts the job at the environment step.",
        "agent:release-bot",
        "shell:run",
        "repo:fiat",
        LONG_JOB,
        measured_file=True,
    ),
)
BY_NAME: dict[str, DemoScenario] = {s.name: s for s in SCENARIOS}


class DemoBusy(FiatError):
    """:data:`MAX_RUNNING` runs are going already."""


class DemoClosed(FiatError):
    """The runner is shutting down: nothing new starts."""


@dataclass
class DemoRun:
    """One launched ``fiat run`` and what it said."""

    id: str
    scenario: DemoScenario
    proc: subprocess.Popen[str]
    started: float
    permit_id: str | None = None  # the current permit (renewals replace it)
    #: The execution's first permit: its revocation covers every renewal (docs/formats.md).
    first_permit: str | None = None
    outcome: str | None = None
    exit_code: int | None = None
    receipt_index: int | None = None
    revoked: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    output_bytes: int = 0
    halted: bool = False
    ended: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return not self.ended.is_set()

    def summary(self) -> dict[str, Any]:
        return {
            "runId": self.id,
            "scenario": self.scenario.name,
            "title": self.scenario.title,
            "pid": self.proc.pid,
            "started": self.started,
            "running": self.running,
            "permitId": self.permit_id,
            "outcome": self.outcome,
            "exitCode": self.exit_code,
            "receiptLogIndex": self.receipt_index,
            "revoked": self.revoked,
        }


class DemoRunner:
    """Launches the web scenarios as real ``fiat run`` processes against this server (see the module)."""

    def __init__(
        self,
        home: Path,
        url: str,
        publish: Callable[[dict[str, Any]], None],
        *,
        max_running: int = MAX_RUNNING,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.home, self.url, self._publish = home, url, publish
        self.max_running, self.python = max_running, python
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._runs: OrderedDict[str, DemoRun] = OrderedDict()
        self._lock = threading.Lock()
        self._closed = False

    # -- what the page reads ---------------------------------------------------------------------
    @staticmethod
    def scenarios() -> list[DemoScenario]:
        return [s for s in SCENARIOS if s.web]

    def get(self, run_id: str) -> DemoRun:
        with self._lock:
            run = self._runs.get(run_id)
        if run is None:
            raise NotFoundError(f"no demo run {run_id!r} here: GET /v1/demo/runs lists the runs this server launched")
        return run

    def runs(self) -> list[dict[str, Any]]:
        """The remembered runs, oldest first, each with its stored events."""
        with self._lock:
            return [{**r.summary(), "events": list(r.events)} for r in self._runs.values()]

    def replay(self) -> list[dict[str, Any]]:
        """Every stored event of the remembered runs, in order (what a new page is sent first)."""
        with self._lock:
            return [e for r in self._runs.values() for e in list(r.events)]

    @property
    def running(self) -> int:
        with self._lock:
            return sum(1 for r in self._runs.values() if r.running)

    # -- launching -----------------------------------------------------------------------------
    def launch(self, name: str) -> DemoRun:
        """Start scenario ``name`` as a ``fiat run`` child process; raises :class:`NotFoundError`
        (no such web scenario), :class:`DemoBusy` or :class:`DemoClosed`."""
        scenario = BY_NAME.get(name)
        if scenario is None or not scenario.web:
            names = ", ".join(s.name for s in self.scenarios())
            raise NotFoundError(f"no demo scenario {name!r}; the scenarios are: {names}")
        run_id = "run_" + secrets.token_urlsafe(9)
        env = {**self.env, "FIAT_HOME": str(self.home), "NO_COLOR": "1", "COLUMNS": "1000", "TERM": "dumb"}
        measured: Path | None = None
        if scenario.measured_file:
            folder = self.home / "demo-runs"
            folder.mkdir(mode=0o700, exist_ok=True)
            measured = folder / f"{run_id}.toml"
            measured.write_text("replicas = 3\n", encoding="utf-8")
            env["FIAT_RUNTIME_FILES"] = str(measured)
        args = [
            self.python, "-m", "fiat.cli.main", "--log-format", "json", "--log-level", "debug",
            "run", "--json", "--url", self.url,
            "--principal", scenario.principal, "--action", scenario.action, "--resource", scenario.resource,
            "--context", json.dumps(dict(scenario.context)), "--", *scenario.argv(self.python),
        ]  # fmt: skip
        with self._lock:
            if self._closed:
                raise DemoClosed("the server is shutting down: no demo run starts now")
            going = sum(1 for r in self._runs.values() if r.running)
            if going >= self.max_running:
                raise DemoBusy(
                    f"{going} demo runs are going already (at most {self.max_running}): "
                    "revoke one or wait for one to end, then launch again"
                )
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,  # a Ctrl-C to the server's terminal is the server's to handle
            )
            run = DemoRun(run_id, scenario, proc, time.time())
            self._runs[run_id] = run
            while len(self._runs) > KEEP_RUNS:
                oldest = next((k for k, r in self._runs.items() if not r.running), None)
                if oldest is None:
                    break
                del self._runs[oldest]
        self._emit(run, "started", pid=proc.pid, title=scenario.title, principal=scenario.principal,
                   action=scenario.action, resource=scenario.resource)  # fmt: skip
        threading.Thread(target=self._watch, args=(run, measured), name=f"demo-{run_id}", daemon=True).start()
        return run

    def note_revoked(self, run: DemoRun, permit: str, log_index: int, epoch: int) -> None:
        """The page revoked ``run``'s ``permit`` (the route did, through the authority)."""
        run.revoked = True
        self._emit(run, "revoked", revokedPermit=permit, logIndex=log_index, revocationEpoch=epoch)

    # -- reading what a run says ------------------------------------------------------------------
    def _watch(self, run: DemoRun, measured: Path | None) -> None:
        proc = run.proc
        assert proc.stdout is not None and proc.stderr is not None
        said: list[str] = []
        reader = threading.Thread(target=self._read_stderr, args=(run, proc.stderr, said, measured), daemon=True)
        reader.start()
        out = proc.stdout.read(256 * 1024)  # fiat's JSON result alone (--json); bounded
        while proc.stdout.read(64 * 1024):  # whatever more is discarded, so the child never blocks
            pass
        proc.wait()
        reader.join(10)
        try:
            result = json.loads(out) if out.strip() else {}
        except ValueError:
            result = {}
        if not isinstance(result, dict):
            result = {}
        run.outcome = str(result.get("outcome") or "error")
        run.exit_code = proc.returncode
        run.permit_id = result.get("permitId") or run.permit_id
        reason = str(result.get("reason") or " ".join(said[-3:]).strip()[-300:])
        m = HALT_RE.match(reason)
        if run.outcome == "halted" and m and not run.halted:
            # A halt the guard did not find in a check (a signal to it): its result names the step.
            self._emit(run, "halt", step=m.group("step"), reason=m.group("reason"))
        index = result.get("receiptLogIndex")
        if isinstance(index, int):
            run.receipt_index = index
            self._emit(run, "receipt", logIndex=index)
        self._emit(
            run,
            "exit",
            outcome=run.outcome,
            exitCode=proc.returncode,
            reason=reason,
            haltLatencyMs=result.get("haltLatencyMs"),
            receiptSpooled=result.get("receiptSpooled"),
            approvalId=result.get("approvalId"),
        )
        run.ended.set()
        if measured is not None:
            measured.unlink(missing_ok=True)

    def _read_stderr(self, run: DemoRun, stream: IO[str], said: list[str], measured: Path | None) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            if not line.strip():
                continue
            record = _json_record(line)
            if record is None:
                said.append(line)
                del said[:-5]
                self._plain_line(run, line)
                continue
            event = record.get("guard_event")
            if event == "established":
                run.permit_id = str(record.get("permit") or "") or run.permit_id
                run.first_permit = run.first_permit or run.permit_id
                self._emit(run, "permit", exp=record.get("exp"), heartbeatMs=record.get("heartbeat_ms"))
                if measured is not None:
                    threading.Timer(TAMPER_AFTER_S, _tamper, args=(measured,)).start()
            elif event == "verified":
                checks = str(record.get("checks") or "")
                self._emit(run, "heartbeat", n=record.get("n"), checks=[c for c in checks.split(",") if c])
            elif event == "renewed":
                run.permit_id = str(record.get("permit") or "") or run.permit_id
                self._emit(run, "renewal", renews=record.get("renews"), exp=record.get("exp"))
            elif event == "halt":
                run.halted = True
                self._emit(run, "halt", n=record.get("n"), step=record.get("step"), reason=record.get("reason"))
            elif str(record.get("level")) not in ("debug",):  # a warning or error of fiat's, as said
                self._output(run, f"{record.get('level')}: {record.get('msg')}", "fiat")

    def _plain_line(self, run: DemoRun, line: str) -> None:
        approval = APPROVAL_RE.search(line)
        if approval:
            self._emit(run, "approval", approvalId=approval.group(1), detail=line.removeprefix("fiat: "))
            return
        if line.startswith("fiat: "):
            permit = PERMIT_RE.search(line)
            if permit and run.permit_id is None:
                run.permit_id = run.first_permit = permit.group(1)
            self._output(run, line, "fiat")
            return
        self._output(run, line, "command")

    def _output(self, run: DemoRun, text: str, source: str) -> None:
        if run.output_bytes >= MAX_OUTPUT_BYTES:
            return
        run.output_bytes += len(text.encode())
        if run.output_bytes >= MAX_OUTPUT_BYTES:
            self._emit(run, "output", source="fiat", text=f"(output past {MAX_OUTPUT_BYTES} bytes is not shown)")
            return
        self._emit(run, "output", source=source, text=text)

    def _emit(self, run: DemoRun, phase: str, **data: Any) -> None:
        with self._lock:
            run.seq += 1
            event = {
                "runId": run.id,
                "seq": run.seq,
                "scenario": run.scenario.name,
                "phase": phase,
                "time": round(time.time(), 3),
                "permitId": run.permit_id,
                **data,
            }
            if len(run.events) < MAX_EVENTS or phase != "heartbeat":
                run.events.append(event)
        self._publish(event)

    # -- the end -------------------------------------------------------------------------------
    def stop(self, grace: float = 3.0) -> None:
        """Refuse new runs and end every run going: SIGTERM (its guard halts the command at
        ``signal`` and delivers the receipt), SIGKILL after ``grace`` seconds; returns once all
        have exited."""
        with self._lock:
            self._closed = True
            going = [r for r in self._runs.values() if r.running]
        for run in going:
            _signal(run.proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for run in going:
            try:
                run.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(run.proc, signal.SIGKILL)
                run.proc.wait()
        for run in going:
            run.ended.wait(5)


def _signal(proc: subprocess.Popen[str], signum: int) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it ended in between
            proc.send_signal(signum)


def _tamper(path: Path) -> None:
    """The measured-file scenario: the file changes while the job runs."""
    if path.exists():
        path.write_text("replicas = 300  # changed while running\n", encoding="utf-8")


def _json_record(line: str) -> dict[str, Any] | None:
    """A structured log record of ``fiat``'s (:class:`fiat.logs.JsonFormatter`), or None."""
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and "logger" in record and "msg" in record else None


__all__ = ["BY_NAME", "SCENARIOS", "DemoBusy", "DemoClosed", "DemoRun", "DemoRunner", "DemoScenario"]
