"""Fiat's one HTTP layer: the authority's JSON API, the log's read API, and the client.

* ``app.py`` — :func:`~fiat.api.app.create_app` (``fiat serve``): assembles the route areas,
  the error handlers, the body limit and the trust-state broadcaster.
* ``models.py`` — the request bodies on the wire (pydantic, strict).
* ``problems.py`` — RFC 9457 problem details and the one exception-type → status table.
* ``context.py`` — :class:`~fiat.api.context.ApiContext`, what every route of one app shares.
* ``credentials.py`` — the admin bearer token and DPoP (RFC 9449) proofs of enrolled keys.
* ``broadcaster.py`` — the signed trust state, re-signed every interval and pushed on a revocation.
* ``limits.py`` — the request-body limit (413).
* ``docs.py`` — Swagger UI and ReDoc served from installed files (no CDN, works offline).
* ``routes/`` — one module per area: ``authorize``, ``approvals``, ``permits`` (single
  use), ``evidence`` (receipts, bundles), ``admin`` (revocations, enrollments, policies),
  ``trust`` (state and SSE stream), ``ops`` (metrics, health, index), ``log`` (C2SP
  tlog-tiles under ``/log``; also ``fiat log serve`` alone).
* ``client.py`` — :class:`~fiat.api.client.AuthorityClient`, the client of ``fiat serve``.

This package may import ``fiat.authorize``, ``fiat.prove``, ``fiat.persist``,
``fiat.formats``, ``fiat.tlog``, ``fiat.config`` and ``fiat.errors``. Nothing imports it
except the edges: ``fiat.cli``, ``fiat.enforce`` (the client), ``fiat.bench`` and
``fiat.demo``. Importing ``fiat.api`` itself loads nothing; import the module you need.
"""
