"""Fiat: cryptographically governed runtime trust.

Lifecycle, one package each: authorize → establish → verify → enforce → prove → persist.
See ARCHITECTURE.md.
"""

__version__ = "0.1.0"
