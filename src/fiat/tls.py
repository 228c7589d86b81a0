"""TLS for the authority's clients: which certificates an ``https://`` authority URL must chain to.

``fiat serve`` serves HTTPS when ``server.tls_cert`` and ``server.tls_key`` are set
(:mod:`fiat.serving`). Its clients — the CLI, ``fiat run``'s guard and its trust monitor,
the receipt spool — verify the server's certificate (RFC 9110 §4.3.4: the chain and the
host name, RFC 6125) against ``server.tls_ca`` (a PEM CA bundle) when it is set, else the
system's trust store. Verification is never turned off: a certificate that does not chain
to those roots, or does not name the host, fails the connection (closed), and
:func:`untrusted_certificate` turns that into a message that says what to set.

:func:`load_config` (:mod:`fiat.config`) calls :func:`use_ca_file` with the home's setting,
so every client made afterwards in the process uses it. Imports: stdlib only.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

_lock = threading.Lock()
_ca_file: Path | None = None
_context: ssl.SSLContext | None = None


def use_ca_file(path: Path | None) -> None:
    """Trust the CA certificates in ``path`` (PEM) for ``https://`` authority URLs; None: the system store."""
    global _ca_file, _context
    with _lock:
        if path != _ca_file:
            _ca_file, _context = path, None


def ca_file() -> Path | None:
    """The CA bundle in use (None: the system's trust store)."""
    return _ca_file


def client_context() -> ssl.SSLContext:
    """The TLS client context every authority client uses (``verify=`` of httpx): certificate
    and host-name verification on (``ssl.create_default_context``, TLS 1.2 or later)."""
    global _context
    with _lock:
        if _context is None:
            ctx = ssl.create_default_context(cafile=None if _ca_file is None else str(_ca_file))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            _context = ctx
        return _context


def untrusted_certificate(exc: BaseException) -> str | None:
    """If ``exc`` (or what caused it) is a refused server certificate, what to do about it; else None."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            where = f"server.tls_ca ({_ca_file})" if _ca_file is not None else "the system trust store"
            return (
                f"the authority's TLS certificate is not trusted ({cur.verify_message or cur.reason}): it does not "
                f"chain to {where}, or does not name this host; set server.tls_ca (FIAT_SERVER_TLS_CA) to the CA "
                "bundle that issued it"
            )
        cur = cur.__cause__ or cur.__context__
    return None
