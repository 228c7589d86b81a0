"""``fiat serve``: the authority (HTTP JSON API) and the transparency log, on one bound port."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fiat.cli.common import EXIT_ERROR, HomeOpt, config, err, errors_to_exit, fail


def serve(
    home: HomeOpt = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default: server.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default: server.port, 8750).")] = None,
) -> None:
    """Serve the authority (HTTP JSON API, OpenAPI at /docs) and the transparency log (/log).

    SIGTERM or SIGINT drains it for server.drain_s seconds (no new permits; receipts still
    accepted; trust streams told going-away), then it exits 0; a second signal exits at once.
    """
    from fiat.api.app import create_app
    from fiat.api.credentials import read_admin_token
    from fiat.config import public_url_for
    from fiat.serving import Drain, bind, check_tls, publish_configured_policy, run_server, url_host
    from fiat.wiring import open_authority

    with errors_to_exit():
        cfg = config(home)
        read_admin_token(cfg.keys_dir)  # a missing, empty or weak admin token: refuse before anything runs
        if cfg.tls is not None:
            check_tls(*cfg.tls)  # an unreadable certificate or key: refuse before anything runs
        h, p = host or cfg.server.host, cfg.server.port if port is None else port
        sock = bind(h, p)  # before anything is said or published: a busy port is the first error
        public_url = public_url_for(cfg, h, sock.getsockname()[1])  # what DPoP proofs must name as htu
        authority = None
        try:
            authority = open_authority(cfg)
            published = publish_configured_policy(authority, cfg)
            if published is not None and published.version is not None:
                err.print(f"published {published.directory} as policy version {published.version}")
            elif published is not None and published.error is not None:
                err.print(
                    f"[yellow]warning:[/] {published.directory} was not published: {published.error};"
                    " the active policy stays"
                )
            drain = Drain(cfg.server.drain_s)
            app_ = create_app(
                cfg,
                trust_interval=cfg.authority.trust_interval_ms / 1000,
                authority=authority,
                public_url=public_url,
                drain=drain,
            )
        except BaseException:
            sock.close()
            if authority is not None:
                authority.close()
            raise
        active = authority.policy
        scheme = "https" if cfg.tls is not None else "http"
        err.print(f"Fiat authority at {scheme}://{url_host(h)}:{sock.getsockname()[1]}  (API docs /docs, log /log)")
        err.print(f"log verifier key: {authority.log.verifier.encode()}")
        err.print(f"public URL (DPoP htu): {public_url}")
        if not cfg.server.public_url and h in ("0.0.0.0", "::"):  # noqa: S104 - comparing, not binding
            err.print(
                f"[yellow]warning:[/] listening on every interface, but proofs must name {public_url}:"
                " set server.public_url to the URL clients use"
            )
        err.print("policy: " + (f"version {active.version}" if active else "none published: every request is denied"))
        # Many request threads wait on one sequencer thread: hand the GIL over more often so the
        # sequencer and the event loop are not starved by a CPU-bound request (default 5 ms).
        sys.setswitchinterval(0.001)
        if cfg.tls is None and h not in ("127.0.0.1", "::1", "localhost"):
            err.print(
                "[yellow]warning:[/] serving plain HTTP beyond the loopback: set server.tls_cert and server.tls_key,"
                " or put a TLS-terminating proxy in front (server.trusted_proxies)"
            )
        if not run_server(app_, sock, drain, trusted_proxies=cfg.server.trusted_proxies, tls=cfg.tls):
            fail(EXIT_ERROR, "the authority did not start; see the messages above")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
