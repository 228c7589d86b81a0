"""Phase 1, authorize: decide before anything runs, and mint the permit.

``authority.py`` is the :class:`~fiat.authorize.authority.Authority` facade (stores passed
in); the decision walk is in ``decider.py`` and ``outcomes.py``; ``approvals.py``,
``revocations.py``, ``policy_state.py``, ``signing.py``, ``trust_state.py`` and
``receipts.py`` hold its parts; ``policy.py`` (Cedar), ``permit.py``, ``dpop.py``,
``explain.py`` and ``names.py`` are the rules they use. May import ``formats``, ``tlog``,
``verify``, ``keys``, ``persist``, ``prove``, ``establish``, ``config`` and ``errors``; never
the HTTP layer (``fiat.api``).
"""
