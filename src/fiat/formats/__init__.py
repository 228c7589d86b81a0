"""Fiat's wire formats: pure encoding code, no I/O, no producer.

What lives here: RFC 8785 JSON canonicalization (``jcs``, the reference; and
``canonical``, the orjson fast path that writes the same bytes), base64 and time
encodings (``encoding``), JWS compact serialization with Ed25519 (``jws``), DSSE
envelopes (``dsse``), in-toto Statement v1 and Fiat's predicate types
(``statement``), and the action-request digest (``action``).

May import: the standard library, ``cryptography`` and ``fiat.errors``. Only
``canonical`` imports ``orjson``; the verifier never imports that module.
"""
