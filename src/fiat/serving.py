"""Starting a server: bind its socket first, publish the configured policy, run it.

``fiat serve``, ``fiat log serve`` and ``fiat demo`` bind the listening socket before
they print where they serve, so a busy port is a clear error (naming the port) and
never a banner followed by a crash, nor a client talking to somebody else's server.

Imports: ``fiat.config``, ``fiat.errors``; ``fiat.authorize.policy`` and uvicorn only when
they are used. Never the CLI.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fiat.config import Config
from fiat.errors import FiatError

if TYPE_CHECKING:
    from fiat.authorize.authority import Authority

BACKLOG = 2048  # uvicorn's default


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


def run_server(app: Any, sock: socket.socket, *, trusted_proxies: Sequence[str] = ()) -> bool:
    """Serve ``app`` on the bound ``sock`` until interrupted. False if the app failed to start.

    ``X-Forwarded-For``/``-Proto`` are honoured only from ``trusted_proxies`` (``server.trusted_proxies``);
    uvicorn's own default would trust them from 127.0.0.1, i.e. from any local process.
    """
    import uvicorn

    proxies = list(trusted_proxies)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level="warning", access_log=False, proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.started


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
