"""``fiat run``: a command governed end to end — permit first, continuous verification, halt, receipt.

Exit codes (documented in README.md):

* the command's own exit status when it ran to its end (0 completed, 1–123 its failure);
* 124 — halted: trust could no longer be proven while it ran (the receipt says why);
* 125 — denied: the authority refused, or an approval was not granted in time; never started;
* 126 — not established: the configured containment is unavailable, the permit failed local
  verification, or the authority was unreachable; never started;
* 128+N — the command died of signal N on its own.

The command is started, and its whole process tree ended, by :mod:`fiat.enforce.containment`.
SIGTERM, SIGINT and SIGHUP to the guard halt the command (step ``signal``), with a receipt.

Lineage (sub-agents): the command's environment holds ``FIAT_PERMIT_ID``, the id of the
permit it runs under (the execution's first permit: its revocation covers every renewal), so
that it can start a governed child execution of its own with ``fiat run --parent
"$FIAT_PERMIT_ID"`` (or ``fiat.governed(parent=os.environ["FIAT_PERMIT_ID"])``). A
revocation of an ancestor covers the child (docs/formats.md, "Renewal and revocation"), and
the cascade halts every generation at ``revocation``: each guard is woken by the pushed trust
state; one that is signalled, or whose command is killed, by an ancestor guard's halt fetches
the current trust state (SIGTERM already sent to its tree) before it decides, so its receipt
names the revocation, not the signal. A halt gives every process of the tree — a nested guard uploading its receipt —
the grace period before the SIGKILL. (A nested ``fiat run`` needs the Fiat home, which
``namespace`` containment hides: sub-agents that govern themselves run under ``process``
containment, or with a home of their own.)

The receipt is spooled durably before it is uploaded (:mod:`fiat.enforce.spool`). When the
authority cannot take it within ``runtime.receipt_upload_s``, the run still exits with the
code above, and the result names the spool file (``receipt_spooled``); with ``--evidence``
no bundle lacking the receipt is written: the flush that uploads the receipt writes it.

A run halted for a split view (step ``log-continuity``: two checkpoints the log signed that do
not lie on one history, found in its trust states or by gossip with a witness) names the
split-view proof the guard wrote (``split_view_proof``:
``<home>/split-views/<UTC time>-<origin hash[:12]>.json``, mode 0600) and how to check it
offline: ``fiat verify FILE --trust-root trust-root.json`` (:mod:`fiat.verify.split_view`).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiat.api.client import ClientError
from fiat.config import Config
from fiat.enforce.bootstrap import Bootstrap, Delivery, Heartbeat, open_session
from fiat.enforce.containment import Containment, ContainmentUnavailable
from fiat.enforce.guard import PERMIT_ENV, Denied, GuardSettings, Halt, NotEstablished
from fiat.enforce.spool import write_atomically
from fiat.formats.dsse import Envelope

EXIT_HALTED, EXIT_DENIED, EXIT_NOT_ESTABLISHED = 124, 125, 126


@dataclass
class RunResult:
    exit_code: int
    outcome: str  # completed | failed | halted | denied | not-established
    reason: str = ""
    permit_id: str | None = None
    receipt_index: int | None = None
    halt_latency: float | None = None  # seconds from the halting check to the contained tree being gone
    decision: dict[str, Any] = field(default_factory=dict)
    receipt_spooled: Path | None = None  # not uploaded yet: the receipt waits in this spool file
    split_view_proof: Path | None = None  # halted for a split view: the proof the guard wrote


def digest_outputs(paths: Sequence[str]) -> list[tuple[str, str]]:
    import hashlib

    out = []
    for p in paths:
        try:
            out.append((p, hashlib.sha256(Path(p).read_bytes()).hexdigest()))
        except OSError:
            continue  # a declared output that was not produced is absent from the receipt
    return out


def run_governed(
    cfg: Config,
    argv: Sequence[str],
    *,
    principal: str,
    action: str,
    resource: str,
    context: dict[str, Any] | None = None,
    parent: str | None = None,
    url: str | None = None,
    evidence_path: Path | None = None,
    outputs: Sequence[str] = (),
    settings: GuardSettings | None = None,
    on_status: Any = None,
    command_stdout: int | None = None,
    scope: list[dict[str, str]] | None = None,
) -> RunResult:
    """Run ``argv`` governed. ``command_stdout``: a file descriptor for the command's stdout
    (default: inherited), so that a caller can keep its own stdout for machine output."""
    cwd = os.getcwd()
    containment = Containment.from_config(cfg)
    try:
        containment.check(cwd)  # before any permit: an unavailable sandbox never starts the command
    except ContainmentUnavailable as exc:
        return RunResult(EXIT_NOT_ESTABLISHED, "not-established", str(exc))
    full_context = {**(context or {}), "command": {"argv": list(argv), "cwd": cwd}}
    boot = open_session(
        cfg,
        argv=argv,
        cwd=cwd,
        principal=principal,
        action=action,
        resource=resource,
        context=full_context,
        parent=parent,
        url=url,
        settings=settings,
        scope=scope,
    )
    session = boot.session
    status = on_status or (lambda _msg: None)
    session.on_status = status
    try:
        try:
            decision = boot.establish()
        except Denied as exc:
            return RunResult(EXIT_DENIED, "denied", exc.reason, decision=exc.decision)
        except NotEstablished as exc:
            return RunResult(EXIT_NOT_ESTABLISHED, "not-established", str(exc))
        except ClientError as exc:
            return RunResult(EXIT_NOT_ESTABLISHED, "not-established", str(exc))
        status(f"permit {session.permit_id}: {decision.get('reason', '')}")
        return _supervise(boot, argv, evidence_path, outputs, decision, command_stdout, containment)
    finally:
        boot.release()


def _supervise(
    boot: Bootstrap,
    argv: Sequence[str],
    evidence_path: Path | None,
    outputs: Sequence[str],
    decision: dict[str, Any],
    command_stdout: int | None = None,
    containment: Containment | None = None,
) -> RunResult:
    containment = containment or Containment()
    session = boot.session
    heartbeat = Heartbeat(session, boot.monitor, boot.flusher)
    start = session.now()  # steady time (see fiat.enforce.guard, "Time")
    session.execution_start = start
    session.containment = containment.mode
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        signalled.append(signum)
        heartbeat.wake.set()

    restore = _on_signals(on_signal)
    try:
        return _contained(
            boot, argv, heartbeat, evidence_path, outputs, decision, command_stdout, containment, signalled
        )
    finally:
        restore()


def _on_signals(handler: Callable[[int], None]) -> Callable[[], None]:
    """SIGTERM, SIGINT and SIGHUP call ``handler(signum)`` (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, lambda signum, _frame: handler(signum)) for s in GUARD_SIGNALS}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


#: Signals the guard turns into a halt of the command, with a receipt naming the signal.
GUARD_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _contained(
    boot: Bootstrap,
    argv: Sequence[str],
    heartbeat: Heartbeat,
    evidence_path: Path | None,
    outputs: Sequence[str],
    decision: dict[str, Any],
    command_stdout: int | None,
    containment: Containment,
    signalled: list[int],
) -> RunResult:
    session, settings = boot.session, boot.settings
    start = session.execution_start
    try:
        # The live permit id, so that the command can name it as the parent of a sub-agent's
        # own governed execution (``fiat run --parent "$FIAT_PERMIT_ID"``).
        env = {**os.environ, PERMIT_ENV: session.permit_id}
        contained = containment.start(argv, cwd=os.getcwd(), stdout=command_stdout, env=env)
    except OSError as exc:
        heartbeat.close()
        session.halted = None
        reason = f"cannot start {argv[0]}: {exc.strerror}"
        envelope = session.sign_receipt(start, session.now(), "failed", 127)
        delivery = boot.deliver(envelope, evidence_path)
        return _result(boot, delivery, evidence_path, 127, "failed", reason, None, {}, _receipt_permit(envelope))
    proc = contained.proc
    exited = threading.Event()

    def reap() -> None:
        proc.wait()
        exited.set()
        heartbeat.wake.set()

    threading.Thread(target=reap, daemon=True).start()
    latency = None
    try:
        halt = heartbeat.run(lambda: exited.is_set() or bool(signalled))
        if halt is None and signalled:
            contained.terminate()  # the command stops now; why is decided while it ends
            halt = _trust_lost(boot)
            if halt is None:
                halt = Halt("signal", f"the guard received {signal.Signals(signalled[0]).name}")
                session.stop(halt)
        if halt is not None:
            t0 = time.monotonic()
            contained.halt(settings.grace)
            latency = time.monotonic() - t0
        else:
            # The command ended: trust must still have held at its end, or the run counts as halted.
            if proc.returncode is not None and proc.returncode < 0:
                halt = _trust_lost(boot)  # killed: by a parent guard's cascade halt, perhaps
            else:
                try:
                    session.check()
                except Halt as h:
                    halt = h
    finally:
        heartbeat.close()
        if proc.poll() is None:  # interrupted: never leave the action running ungoverned
            contained.halt(settings.grace)
        # Whatever the command left running ends with it.
        contained.sweep()
    end = session.now()
    code = proc.returncode
    proof = None
    if halt is not None:
        outcome, exit_code, reason = "halted", EXIT_HALTED, f"halted at {halt.step}: {halt.reason}"
        proof = boot.monitor.snapshot().split_view_file if halt.step == "log-continuity" else None
        if proof is not None and str(proof) not in reason:
            reason += f"; split-view proof: {proof} (`fiat verify {proof} --trust-root trust-root.json` checks it)"
    elif code == 0:
        outcome, exit_code, reason = "completed", 0, "completed"
    else:
        outcome = "failed"
        exit_code = 128 - code if code < 0 else code
        reason = f"the command exited with {exit_code}"
    receipt_exit = code if code is not None and code >= 0 else None
    envelope = session.sign_receipt(start, end, outcome, receipt_exit, digest_outputs(outputs))
    delivery = boot.deliver(envelope, evidence_path)
    result = _result(
        boot, delivery, evidence_path, exit_code, outcome, reason, latency, decision, _receipt_permit(envelope)
    )
    result.split_view_proof = proof
    return result


def _trust_lost(boot: Bootstrap) -> Halt | None:
    """The halt trust already calls for, checked against a trust state fetched now; None if it holds.

    For an ending the guard did not find itself — a signal to the guard, the command killed. In
    a lineage cascade every guard of the tree is signalled by the ancestor guard that found the
    revocation first, often before its own copy of the pushed state arrived: the fetched state
    shows the revocation, so the receipt says ``revocation``, not ``signal``."""
    boot.monitor.refresh(min(1.0, boot.settings.grace / 2))
    try:
        boot.session.check()
    except Halt as halt:
        return halt
    return None


def _receipt_permit(envelope: Envelope) -> str | None:
    """The permit id a signed receipt names (its predicate's ``permit.jti``)."""
    try:
        permit = json.loads(envelope.payload)["predicate"]["permit"]
        return str(permit["jti"]) if isinstance(permit, dict) else None
    except (ValueError, KeyError, TypeError):
        return None


def _result(
    boot: Bootstrap,
    delivery: Delivery,
    evidence_path: Path | None,
    exit_code: int,
    outcome: str,
    reason: str,
    latency: float | None,
    decision: dict[str, Any],
    receipt_permit: str | None = None,
) -> RunResult:
    """The run's result once its receipt is delivered: logged (the bundle written when asked), or
    spooled (the command's own exit code all the same, and no bundle that lacks the receipt).

    The bundle written is that of the permit the receipt names (``receipt_permit``): a renewal
    the heartbeat obtained as the command was ending is a newer permit nothing ran under, and
    its bundle holds no receipt."""
    session = boot.session
    if delivery.index is None:
        why = f"the receipt is not logged yet: {delivery.error}"
        return RunResult(
            exit_code, outcome, f"{reason}; {why}", session.permit_id, None, latency, decision, delivery.spooled
        )
    if evidence_path is not None:
        try:
            write_atomically(evidence_path, json.dumps(session.bundle(receipt_permit), indent=2) + "\n")
        except ClientError as exc:
            reason = f"{reason}; the evidence bundle could not be fetched: {exc} (`fiat bundle {session.permit_id}`)"
    return RunResult(exit_code, outcome, reason, session.permit_id, delivery.index, latency, decision)
