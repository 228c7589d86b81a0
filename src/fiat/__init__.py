"""Fiat: cryptographically governed runtime trust.

Lifecycle, one package each: authorize → establish → verify → enforce → prove → persist.
See ARCHITECTURE.md.

``fiat.governed``, ``fiat.Halt``, ``fiat.Denied`` and ``fiat.NotEstablished`` are loaded
on first use, so ``import fiat.verify`` stays free of the runtime's dependencies.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "governed": ("fiat.enforce.governed", "governed"),
    "Halt": ("fiat.enforce.guard", "Halt"),
    "Denied": ("fiat.enforce.guard", "Denied"),
    "NotEstablished": ("fiat.enforce.guard", "NotEstablished"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'fiat' has no attribute {name!r}")
