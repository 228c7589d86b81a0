"""``fiat.governed``: the runtime guard for Python code — a context manager and a decorator.

::

    with fiat.governed(action="deploy", resource="service:payments", context={...}) as g:
        for step in plan:
            g.check()          # cooperative code: raises fiat.Halt once trust is lost
            apply(step)

    @fiat.governed(action="tool:refund", resource="order:1", context={...})
    async def refund() -> None: ...     # async work is cancelled on a halt

    @fiat.governed(action="shell:run", resource="repo:fiat", isolate=True)
    def crunch() -> int: ...            # runs in a child process, killed hard on a halt

Entering establishes trust exactly as ``fiat run`` does (permit verified locally
before the body runs; :class:`~fiat.enforce.guard.Denied` or
:class:`~fiat.enforce.guard.NotEstablished` if not). While the body runs a watcher
thread re-verifies on every heartbeat and on every trust state. Leaving signs
the receipt. Many guarded blocks in one process share one trust subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import getpass
import inspect
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from fiat.api.client import AuthorityClient
from fiat.config import load_config
from fiat.enforce.guard import GuardSettings, Halt, NotEstablished, Runtime, Session
from fiat.enforce.trust import TrustMonitor
from fiat.establish.measure import default_measurer
from fiat.home import keyring, trust_root

F = TypeVar("F", bound=Callable[..., Any])


class Guarded:
    """The handle a governed block gets: ``check()``, the permit, and whether it was halted."""

    def __init__(self, session: Session) -> None:
        self._session = session

    @property
    def permit_id(self) -> str:
        return self._session.permit_id

    @property
    def halted(self) -> Halt | None:
        return self._session.halted

    @property
    def receipt_index(self) -> int | None:
        return self._session.receipt_index

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
    ) -> None:
        self.action, self.resource, self.principal = action, resource, principal
        self.context, self.parent, self.home, self.url = context or {}, parent, home, url
        self.isolate, self.settings = isolate, settings
        self._session: Session | None = None
        self._monitor: TrustMonitor | None = None
        self._client: AuthorityClient | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self._start = 0.0
        self._on_halt: Callable[[Halt], None] | None = None

    # -- establish / finish ----------------------------------------------------------------
    def _establish(self) -> Session:
        cfg = load_config(self.home, require=True)
        settings = self.settings or GuardSettings(
            heartbeat=cfg.runtime.heartbeat_ms / 1000,
            staleness=cfg.runtime.staleness_ms / 1000,
            grace=cfg.runtime.halt_grace_ms / 1000,
            approval_wait=cfg.runtime.approval_wait_s,
        )
        url = self.url or f"http://{cfg.server.host}:{cfg.server.port}"
        rec, key = keyring(cfg).signing_key("runtime", cfg.runtime.name or None)
        root = trust_root(cfg)
        principal = self.principal or os.environ.get("FIAT_PRINCIPAL") or f"user:{getpass.getuser()}"
        self._client = AuthorityClient(url)
        self._monitor = TrustMonitor.shared(url, root)
        argv = [sys.executable, *sys.argv]
        measurer = default_measurer(argv, os.getcwd(), cfg.runtime.files, cfg.runtime.env_allowlist)
        session = Session(
            self._client,
            root,
            Runtime(rec.kid, key),
            self._monitor,
            measurer,
            principal,
            self.action,
            self.resource,
            self.context,
            self.parent,
            settings,
        )
        try:
            if not self._monitor.wait_fresh(settings.staleness):
                raise NotEstablished("trust-fresh", f"no valid trust state from {url}")
            session.establish()
        except BaseException:
            self._release()
            raise
        self._session = session
        self._start = time.time()
        session.execution_start = self._start
        return session

    def _watch(self) -> None:
        session, monitor = self._session, self._monitor
        assert session is not None and monitor is not None
        wake = monitor.subscribe()
        try:
            while not self._stop.is_set():
                wake.wait(session.heartbeat)
                wake.clear()
                if self._stop.is_set():
                    return
                try:
                    session.check()
                except Halt as halt:
                    if self._on_halt is not None:
                        self._on_halt(halt)
                    return
        finally:
            monitor.unsubscribe(wake)

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
                session.receipt_index = session.receipt(self._start, time.time(), outcome, code)
        finally:
            self._release()

    def _release(self) -> None:
        if self._monitor is not None:
            self._monitor.release()
            self._monitor = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- sync context manager ----------------------------------------------------------------
    def __enter__(self) -> Guarded:
        session = self._establish()
        self._begin_watch(None)
        return Guarded(session)

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
        return Guarded(session)

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
        """Run ``fn`` in a child process that the guard kills (SIGTERM, grace, SIGKILL) on a halt."""
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe(duplex=False)
        session = self._establish()
        proc = ctx.Process(target=_child, args=(fn, args, kwargs, child_end), daemon=True)
        halted = threading.Event()
        self._begin_watch(lambda _h: halted.set())
        error: BaseException | None = None
        try:
            proc.start()
            child_end.close()
            while proc.is_alive() and not halted.is_set():
                proc.join(0.05)
            if halted.is_set() and proc.is_alive():
                assert proc.pid is not None
                os.kill(proc.pid, signal.SIGTERM)
                proc.join(session.settings.grace)
                if proc.is_alive():
                    os.kill(proc.pid, signal.SIGKILL)
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


def _child(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], conn: Any) -> None:
    try:
        conn.send((True, fn(*args, **kwargs)))
    except BaseException as exc:  # report, do not hide, the child's failure
        conn.send((False, exc))
    finally:
        conn.close()
