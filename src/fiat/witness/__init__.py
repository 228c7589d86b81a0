"""The witness: C2SP tlog-witness (https://c2sp.org/tlog-witness), ``fiat witness …``.

* ``core`` — :class:`~fiat.witness.core.Witness`, the ``add-checkpoint`` state machine (the spec's
  checks in order, no I/O) over a :class:`~fiat.witness.core.WitnessStore`; the monitoring view.
* ``logs`` — the logs file (``log <vkey> [<url>]`` lines, C2SP tlog-policy style).
* ``keys`` — the ML-DSA-44 cosigner key file (the Ed25519 one is a PKCS#8 PEM of ``fiat.keys.pem``).
* ``split_views`` — split-view proofs from refused submissions.

The durable store is ``fiat.persist.sqlite.witness``, the HTTP app ``fiat.api.witness``, the
commands ``fiat.cli.witness``. May import ``fiat.tlog``, ``fiat.verify``, ``fiat.errors``.
"""
