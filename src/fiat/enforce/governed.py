"""``fiat.governed``: the runtime guard for Python code — a context manager and a decorator.

::

    with fiat.governed(principal="agent:release-bot", action="deploy", resource="service:docs",
                       context={"version": "1.2", "replicas": 3}) as g:
        for step in plan:
            g.check()          # cooperative code: raises fiat.Halt once trust is lost
            apply(step)

    @fiat.governed(principal="agent:support-assistant", action="tool:refund", resource="order:1",
                   context={"amount_cents": 2500, "currency": "EUR"})
    async def refund() -> None: ...     # async work is cancelled on a halt

    @fiat.governed(principal="agent:release-bot", action="shell:run", resource="repo:fiat", isolate=True)
    def crunch() -> int: ...            # runs in a child process; it and every process it
                                        # starts are killed on a halt

Entering establishes trust exactly as ``fiat run`` does (environment Evidence
measured and sent, permit verified locally before the body runs;
:class:`~fiat.enforce.guard.Denied`, saying why, or
:class:`~fiat.enforce.guard.NotEstablished` if not). The request's context gets
``command`` (this Python process's argv and working directory), as ``fiat run``
adds the command it runs, unless the caller passes its own. The principal is
``principal=``, else ``$FIAT_PRINCIPAL``, else the operating-system user as
``user:NAME`` (the policy's entities must know whoever it is). While the body
runs a watcher thread re-verifies on every heartbeat and on every trust state.
Leaving signs the receipt and spools it durably before uploading it
(:mod:`fiat.enforce.spool`): should the authority be unreachable, the block still ends as
it would have, ``receipt_spooled`` names the spool file, a line on stderr says so, and
the receipt is uploaded later (the next ``fiat run``, ``fiat receipts flush``, or any
running guard once the authority is back). Many guarded blocks in one process share one trust subscription.

``isolate=True`` contains the child with :mod:`fiat.enforce.containment`'s ``process``
mode (a fork cannot enter a new PID namespace): its own session, ``PR_SET_PDEATHSIG``, and
it is a child subreaper, so that on a halt — or when the function returns — every process
it started is found and killed. The receipt records ``containment: "process"`` (``"none"``
for a block that runs in this process).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import inspect
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from fiat.config import load_config
from fiat.enforce.bootstrap import Bootstrap, Heartbeat, open_session
from fiat.enforce.containment import IN_PROCESS, PROCESS, Tree, become_subreaper, die_with_parent
from fiat.enforce.guard import GuardSettings, Halt, Session

F = TypeVar("F", bound=Callable[..., Any])


class Guarded:
    """The handle a governed block gets: ``check()``, the permit, and whether it was halted."""

    @property
    def permit_id(self) -> str:
        return self._session.permit_id

    @property
    def halted(self) -> Halt | None:
        return self._session.halted

    @property
    def receipt_index(self) -> int | None:
        return self._session.receipt_index

    @property
    def receipt_spooled(self) -> Path | None:
        """The spool file of a receipt that could not be uploaded yet (None once logged)."""
        return self._owner._spooled

    def __init__(self, session: Session, owner: governed) -> None:
        self._session, self._owner = session, owner

    def check(self) -> None:
        """Raise :class:`Halt` if trust was lost (the watcher already halted the block)."""
        if self._session.halted is not None:
            raise self._session.halted


class governed:
    def __init__(
        self,
        *,
        action: str,
        resource: str,
        principal: str | None = None,
        context: dict[str, Any] | None = None,
        parent: str | None = None,
        home: str | Path | None = None,
        url: str | None = None,
        isolate: bool = False,
        settings: GuardSettings | None = None,
        scope: list[dict[str, str]] | None = None,
    ) -> None:
        self.action, self.resource, self.principal, self.scope = action, resource, principal, scope
        self.context, self.parent, self.home, self.url = context or {}, parent, home, url
        self.isolate, self.settings = isolate, settings
        self._session: Session | None = None
        self._boot: Bootstrap | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._start = 0.0
        self._on_halt: Callable[[Halt], None] | None = None
        self._spooled: Path | None = None

    # -- establish / finish ----------------------------------------------------------------
    def _establish(self) -> Session:
        cfg = load_config(self.home, require=True)
        principal = self.principal or os.environ.get("FIAT_PRINCIPAL") or f"user:{getpass.getuser()}"
        argv, cwd = [sys.executable, *sys.argv], os.getcwd()
        # As `fiat run` does, the request names what runs: this Python process (unless the caller says).
        context = {"command": {"argv": argv, "cwd": cwd}, **self.context}
        boot = open_session(
            cfg,
            argv=argv,
            cwd=cwd,
            principal=principal,
            action=self.action,
            resource=self.resource,
            context=context,
            parent=self.parent,
            url=self.url,
            settings=self.settings,
            scope=self.scope,
        )
        self._boot = boot
        try:
            boot.establish()
        except BaseException:
            self._release()
            raise
        session = boot.session
        session.containment = PROCESS if self.isolate else IN_PROCESS
        self._session = session
        self._start = session.now()  # steady time (see fiat.enforce.guard, "Time")
        session.execution_start = self._start
        return session

    def _watch(self) -> None:
        assert self._session is not None and self._boot is not None
        with Heartbeat(self._session, self._boot.monitor, self._boot.flusher) as heartbeat:
            halt = heartbeat.run(self._stop.is_set)
        if halt is not None and self._on_halt is not None:
            self._on_halt(halt)

    def _begin_watch(self, on_halt: Callable[[Halt], None] | None) -> None:
        self._on_halt = on_halt
        self._stop.clear()
        self._watcher = threading.Thread(target=self._watch, name="fiat-guard", daemon=True)
        self._watcher.start()

    def _finish(self, error: BaseException | None) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        session = self._session
        try:
            if session is not None:
                if session.halted is None:
                    # The block ended: trust must still hold at its end, or it counts as halted.
                    with contextlib.suppress(Halt):
                        session.check()
                if session.halted is not None:
                    outcome, code = "halted", None
                elif error is not None:
                    outcome, code = "failed", None
                else:
                    outcome, code = "completed", 0
                envelope = session.sign_receipt(self._start, session.now(), outcome, code)
                assert self._boot is not None
                delivery = self._boot.deliver(envelope)
                session.receipt_index, self._spooled = delivery.index, delivery.spooled
                if delivery.index is None:
                    where = f"spooled at {delivery.spooled}" if delivery.spooled else "NOT spooled"
                    sys.stderr.write(
                        f"fiat: receipt for {session.permit_id} {where}; it will be uploaded by the next "
                        f"fiat run or `fiat receipts flush` ({delivery.error})\n"
                    )
        finally:
            self._release()

    def _release(self) -> None:
        if self._boot is not None:
            self._boot.release()
            self._boot = None

    # -- sync context manager ----------------------------------------------------------------
    def __enter__(self) -> Guarded:
        session = self._establish()
        self._begin_watch(None)
        return Guarded(session, self)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> Literal[False]:
        self._finish(exc)
        session = self._session
        if session is not None and session.halted is not None and exc is None:
            raise session.halted  # the block finished, but trust was lost while it ran
        return False

    # -- async context manager ------------------------------------------------------------------
    async def __aenter__(self) -> Guarded:
        session = await asyncio.to_thread(self._establish)
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def cancel(_: Halt) -> None:
            if task is not None:
                loop.call_soon_threadsafe(task.cancel)

        self._begin_watch(cancel)
        return Guarded(session, self)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> Literal[False]:
        await asyncio.to_thread(self._finish, exc)
        session = self._session
        if session is not None and session.halted is not None:
            raise session.halted from (exc if isinstance(exc, asyncio.CancelledError) else None)
        return False

    # -- decorator -----------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        spec = dict(
            action=self.action,
            resource=self.resource,
            principal=self.principal,
            context=self.context,
            parent=self.parent,
            home=self.home,
            url=self.url,
            isolate=self.isolate,
            settings=self.settings,
            scope=self.scope,
        )
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with governed(**spec):  # type: ignore[arg-type]
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            guard = governed(**spec)  # type: ignore[arg-type]
            if guard.isolate:
                return guard._run_isolated(fn, args, kwargs)
            with guard:
                return fn(*args, **kwargs)

        return cast(F, wrapper)

    def _run_isolated(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run ``fn`` in a contained child process; on a halt it and all it started are killed
        (SIGTERM to the whole tree, the grace period, then SIGKILL)."""
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe(duplex=False)
        session = self._establish()
        proc = ctx.Process(target=_child, args=(fn, args, kwargs, child_end, os.getpid()), daemon=True)
        halted = threading.Event()
        self._begin_watch(lambda _h: halted.set())
        error: BaseException | None = None
        try:
            proc.start()
            child_end.close()
            assert proc.pid is not None
            pid = proc.pid
            tree = Tree(lambda: [pid] if proc.exitcode is None else [], keep=[pid])
            while proc.is_alive() and not halted.is_set():
                proc.join(0.05)
                tree.members()  # remember the tree while it is whole
            if halted.is_set():
                tree.terminate()
                deadline = time.monotonic() + session.settings.grace
                while proc.is_alive() and time.monotonic() < deadline:
                    proc.join(0.02)
                    tree.members()
                tree.kill()
                proc.join()
            if session.halted is not None:
                raise session.halted
            if not parent_end.poll():
                raise RuntimeError(f"the isolated function died (exit code {proc.exitcode})")
            ok, value = parent_end.recv()
            if not ok:
                raise value
            return value
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._finish(error if not isinstance(error, Halt) else None)


def _child(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], conn: Any, guard: int) -> None:
    die_with_parent(guard)
    os.setsid()
    become_subreaper()  # every orphan of the tree is re-parented here, where a sweep finds it
    try:
        conn.send((True, fn(*args, **kwargs)))
    except BaseException as exc:  # report, do not hide, the child's failure
        conn.send((False, exc))
    finally:
        conn.close()
        # What the function started ends with it.
        Tree(lambda: [os.getpid()], include_roots=False).kill()
