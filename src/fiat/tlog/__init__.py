"""Transparency-log protocol code: pure RFC 6962/9162 and C2SP, no I/O.

What lives here: Merkle hashing and proofs (``merkle``, RFC 9162 §2.1),
``signed-note`` (``note``), ``tlog-checkpoint`` (``checkpoint``), ``tlog-tiles``
geometry and entry bundles (``tiles``), ``tlog-proof`` files (``proof_file``) and
``tlog-cosignature`` (``cosignature``).

May import: the standard library, ``cryptography`` and ``fiat.errors``; never a
producer (the log's sequencer, storage, HTTP).
"""
