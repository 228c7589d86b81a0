"""Names of principals, actions and resources as Cedar entity UIDs (standard library only).

``Type::"id"`` stays as it is; the shorthand ``kind:id`` becomes ``Kind::"id"``
(``agent:release-bot`` → ``Agent::"release-bot"``); actions are plain names
(``deploy`` → ``Action::"deploy"``). Revocations and policy both use this one
spelling, so ``user:alice`` and ``User::"alice"`` are the same principal.
"""

from __future__ import annotations

import json

from fiat.errors import MalformedError


def entity_uid(value: str, what: str) -> str:
    """``Type::"id"`` stays; ``kind:id`` becomes ``Kind::"id"``."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise MalformedError(what, "must be a non-empty string of at most 1,024 characters")
    if '::"' in value and value.endswith('"'):
        return value
    kind, sep, ident = value.partition(":")
    if not sep or not kind or not ident or not kind.replace("_", "").isalnum():
        raise MalformedError(what, f'{value!r} is neither Type::"id" nor kind:id')
    return f"{kind[0].upper()}{kind[1:]}::{json.dumps(ident)}"


def action_uid(value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise MalformedError("action", "must be a non-empty string")
    return value if value.startswith("Action::") else f"Action::{json.dumps(value)}"


def same_principal(a: str, b: str) -> bool:
    try:
        return entity_uid(a, "principal") == entity_uid(b, "principal")
    except MalformedError:
        return a == b
