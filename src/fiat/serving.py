"""Starting a server: bind its socket first, publish the configured policy, run it, drain it.

``fiat serve``, ``fiat log serve`` and ``fiat demo`` bind the listening socket before
they print where they serve, so a busy port is a clear error (naming the port) and
never a banner followed by a crash, nor a client talking to somebody else's server.

**A clean shutdown** (:func:`run_server`, :class:`Drain`). uvicorn's own handling of
SIGTERM/SIGINT waits for every open connection to finish, and a trust stream never
does: the server would stay half alive, pushing trust states while refusing work. Here
the first SIGTERM or SIGINT starts a *drain* instead:

1. no new permits: ``POST /v1/authorize`` (new permits and renewals) and
   ``POST /v1/permits/{jti}/consume`` answer 503 problem details with ``Retry-After``,
   and so does a new ``GET /v1/trust/stream``;
2. every open trust stream is sent ``event: going-away`` (data ``{"drainS": N,
   "reason": "shutdown"}``), so a guard knows the authority is leaving and does not take
   the closed stream for an attack; trust states keep being pushed on those streams
   (they are still true, and a revocation must still reach the guards);
3. receipts, approval decisions, admin calls and every read (bundles, log, trust state)
   keep being served;
4. the drain ends after ``server.drain_s`` seconds, or sooner once no trust stream is
   open and no request is in flight (for :data:`QUIET_S` on end); then every stream is
   ended, uvicorn's graceful shutdown closes the connections (at most
   :data:`GRACEFUL_S` for a request still running) and the process exits 0.

A second SIGTERM/SIGINT during the drain ends it at once (the streams are still ended).
The process exits within ``server.drain_s`` + 2 s of the first signal. One line on
stderr says when the drain starts and one when it ends.

Imports: ``fiat.config``, ``fiat.errors``; ``fiat.authorize.policy`` and uvicorn only when
they are used. Never the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from fiat.config import Config
from fiat.errors import ConfigError, FiatError

if TYPE_CHECKING:
    from fiat.authorize.authority import Authority

BACKLOG = 2048  # uvicorn's default

#: The drain ends early once no trust stream is open and no request in flight for this long
#: (a guard between its command's end and its receipt, or reconnecting, is not lost to a gap).
QUIET_S = 0.5

#: After the drain, how long uvicorn's graceful shutdown waits for a request still running
#: before cancelling it (the ``drain_s`` + 2 s bound of the shutdown includes this).
GRACEFUL_S = 1

#: The signals that drain the server: SIGTERM (``kill``, service managers) and SIGINT (Ctrl-C).
DRAIN_SIGNALS = (signal.SIGINT, signal.SIGTERM)

log = logging.getLogger("fiat.server")


class BindError(FiatError):
    """The server cannot listen on the address it was given."""

    def __init__(self, message: str, host: str, port: int) -> None:
        super().__init__(message)
        self.host, self.port = host, port


class PortInUseError(BindError):
    """Another process already listens on the port."""


def url_host(host: str) -> str:
    """``host`` as it appears in a URL (RFC 3986 §3.2.2: an IPv6 literal in brackets)."""
    return f"[{host}]" if ":" in host else host


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: the OS picks; ``getsockname`` tells)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As uvicorn does: a restart may reuse a port whose old connections are in TIME_WAIT;
        # it still cannot take a port another socket listens on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        where = f"{url_host(host)}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(f"port {port} is already in use ({where})", host, port) from exc
        raise BindError(f"cannot listen on {where}: {exc.strerror or exc}", host, port) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def check_port_free(host: str, port: int) -> None:
    """Raise ``PortInUseError`` when something already listens on ``host``:``port``."""
    bind(host, port).close()


class Drain:
    """One server's shutdown drain (see the module docstring); read by the routes, driven by
    :func:`run_server`. Every method runs on the server's event loop."""

    def __init__(self, seconds: float, meaning: str = "no new permits; receipts still accepted") -> None:
        self.seconds = seconds
        self.meaning = meaning  # what the drain means to clients, as the server says it starts
        self.started_at: float | None = None  # time.monotonic() when the drain began
        self.streams = 0  # open trust streams
        self.going_away = asyncio.Event()  # set when the drain begins: streams say going-away
        self.closing = asyncio.Event()  # set when the drain ends: streams end
        self._quiet_since: float | None = None

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self, now: float) -> None:
        if self.started_at is None:
            self.started_at = now
            self.going_away.set()

    def close(self) -> None:
        self.going_away.set()
        self.closing.set()

    def retry_after(self, now: float) -> int:
        """Seconds a refused client should wait (``Retry-After``, RFC 9110 §10.2.3): until the
        drain is over, and one more for a restarted server to come up."""
        left = self.seconds - (now - self.started_at) if self.started_at is not None else self.seconds
        return max(1, math.ceil(left) + 1)

    def over(self, now: float, in_flight: int) -> bool:
        """True once the drain has lasted ``seconds``, or nothing has been open for :data:`QUIET_S`."""
        if self.started_at is None:
            return False
        if now - self.started_at >= self.seconds:
            return True
        if self.streams > 0 or in_flight > 0:
            self._quiet_since = None
            return False
        if self._quiet_since is None:
            self._quiet_since = now
        return now - self._quiet_since >= QUIET_S


def check_tls(cert: Path, key: Path) -> None:
    """``server.tls_cert``/``server.tls_key``: a PEM certificate chain and its private key that load
    together (the check uvicorn would make, made first so that the error says which setting to fix)."""
    import ssl

    for name, path in (("server.tls_cert", cert), ("server.tls_key", key)):
        if not path.is_file():
            raise ConfigError(f"{name}: {path} is not a file; point it at a PEM file (relative paths are in the home)")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"server.tls_cert {cert} and server.tls_key {key} do not load as a PEM certificate chain and its "
            f"private key: {exc}"
        ) from None


def run_server(
    app: Any,
    sock: socket.socket,
    drain: Drain | None = None,
    *,
    trusted_proxies: Sequence[str] = (),
    tls: tuple[Path, Path] | None = None,
) -> bool:
    """Serve ``app`` on the bound ``sock`` until SIGTERM/SIGINT, then drain (``drain``; none:
    the server stops at once) and exit. False if the app failed to start.

    With ``tls`` (``server.tls_cert``, ``server.tls_key``: see :func:`check_tls`) it serves
    HTTPS (RFC 9110 §4.2.2, TLS 1.2 or later) and nothing in plain HTTP.

    ``X-Forwarded-For``/``-Proto`` are honoured only from ``trusted_proxies`` (``server.trusted_proxies``);
    uvicorn's own default would trust them from 127.0.0.1, i.e. from any local process.
    """
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn's server, with the drain in front of its graceful shutdown."""

        def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
            super().__init__(config)
            self.drain = drain
            self.signals = 0
            self.closed = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # A signal handler (main thread): only flags, acted on by on_tick on the loop.
            self.signals += 1
            if self.signals > 1 or not self.started:
                self.should_exit = True  # a second signal, or one before the server started: now

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # As uvicorn's, except that the signals are not raised again afterwards: a server
            # that drained and exited cleanly exits 0, not by the signal.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self.handle_exit) for sig in DRAIN_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        async def on_tick(self, counter: int) -> bool:
            now = time.monotonic()
            if self.signals and not self.drain.draining and not self.should_exit:
                self.drain.begin(now)
                _say(f"draining for {self.drain.seconds:g} s: {self.drain.meaning}")
            in_flight = len(self.server_state.tasks) - self.drain.streams  # a stream is a task too
            if self.drain.draining and not self.should_exit and self.drain.over(now, in_flight):
                self.should_exit = True
            if self.should_exit and not self.closed:
                self.closed = True
                self.drain.close()  # end every stream, so the graceful shutdown does not wait on them
                if self.drain.draining:
                    took = now - (self.drain.started_at or now)
                    _say(f"drain over after {took:.1f} s: closing {self.drain.streams} trust stream(s); exiting")
            return await super().on_tick(counter)

    proxies = list(trusted_proxies)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_S,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
        ssl_certfile=None if tls is None else str(tls[0]),
        ssl_keyfile=None if tls is None else str(tls[1]),
    )
    server = DrainingServer(config, drain if drain is not None else Drain(0))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.started


def _say(line: str) -> None:
    """One line on stderr, whatever the logging configuration (an operator watches for it)."""
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class AutoPublish:
    """What ``publish_configured_policy`` did with the bundle named by ``authority.policy_dir``."""

    directory: Path
    version: int | None = None  # the version it was published as; None when already active or refused
    error: str | None = None  # why it was not published (the active policy stays)


def publish_configured_policy(authority: Authority, cfg: Config) -> AutoPublish | None:
    """Publish ``authority.policy_dir`` unless it is already the active policy (None: none configured)."""
    from fiat.authorize.policy import PolicyError, bundle_digest, read_bundle_files

    if not cfg.authority.policy_dir:
        return None
    directory = Path(cfg.authority.policy_dir)
    directory = directory if directory.is_absolute() else cfg.home / directory
    try:
        digest = bundle_digest(read_bundle_files(directory))
        active = authority.policy
        if active is not None and active.digest == digest:
            return AutoPublish(directory)
        version, _, _ = authority.publish_policy(directory)
    except PolicyError as exc:
        return AutoPublish(directory, error=str(exc))
    return AutoPublish(directory, version)
