"""Enforce: the runtime guard — start an action only on a verified permit, keep proving trust, halt.

* ``bootstrap`` — the one set-up of a governed execution (settings, runtime key, trust
  root, client, trust subscription, session) and the one heartbeat loop;
* ``guard`` — :class:`~fiat.enforce.guard.Session`: establish, check, renew, halt, receipt;
  the permit rules it applies are the verifier's own (:mod:`fiat.verify.permit`);
* ``trust`` — the shared subscription to the authority's signed trust states (SSE);
* ``containment`` — the one place that starts a governed process and ends its whole tree
  (a bubblewrap PID namespace, or a process group with a subreaper);
* ``run`` — ``fiat run`` (a contained command);
* ``governed`` — ``fiat.governed`` (a context manager and decorator for Python code).

May import: ``fiat.verify``, ``fiat.formats``, ``fiat.tlog``, ``fiat.establish``,
``fiat.prove`` (statements and audit), ``fiat.api.client`` (its only HTTP), ``fiat.config``,
``fiat.home`` and ``fiat.keys``; nothing imports it but the edges (cli, bench, demo).
"""
