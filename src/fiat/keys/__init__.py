"""Fiat's keys: PEM files, the home's keyring, and key rotation.

* ``fiat.keys.pem`` — Ed25519 private keys as PKCS#8 PEM files (0600, never overwritten,
  optionally passphrase-protected).
* ``fiat.keys.keyring`` — the keys of a home by role with validity periods
  (``<home>/keys/keyring.json``), and the trust root built from them.
* ``fiat.keys.rotation`` — the rotation workflow: a successor key, a key-rotation
  statement signed by both keys (and the authority) and appended to the log.

May import: ``fiat.errors``, ``fiat.formats``, ``fiat.verify`` (trust-root types) and
``fiat.prove`` (the rotation statement and the recorder it is logged with); never the
CLI, the server or ``fiat.home`` (which imports this package).
"""
