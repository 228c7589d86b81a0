"""Names of principals, actions and resources as Cedar entity UIDs (standard library only).

``Type::"id"`` stays as it is; the shorthand ``kind:id`` becomes ``Kind::"id"``
(``agent:release-bot`` → ``Agent::"release-bot"``); actions are plain names
(``deploy`` → ``Action::"deploy"``). Revocations and policy both use this one
spelling, so ``user:alice`` and ``User::"alice"`` are the same principal. The entity
spelling itself is :func:`fiat.formats.action.entity_uid` (the verifier uses it too).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from fiat.errors import MalformedError
from fiat.formats.action import entity_uid

__all__ = ["action_uid", "cedar_request_uid", "entity_uid"]

# A Cedar entity type: identifiers joined by ``::`` (Cedar grammar, ``Path``).
_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*\Z")
# Ids that read the same with or without Cedar's string parser: no escapes, quotes,
# controls or characters Cedar asks to be written escaped; anything else keeps the string form.
_PLAIN_ID = re.compile(r"[A-Za-z0-9_.:/@+=~ -]*\Z")


def cedar_request_uid(uid: str) -> Any:
    """The form handed to Cedar for an entity UID string (``Type::"id"``).

    The structured ``{"type": ..., "id": ...}`` form spares Cedar's parser on every
    request. Only plain ids take it (``_PLAIN_ID``: Cedar reads them the same either
    way); any other id keeps the string form, so Cedar's parser decides as it always did.
    """
    form = _request_uid(uid)
    return dict(form) if isinstance(form, dict) else form


@lru_cache(maxsize=4096)
def _request_uid(uid: str) -> Any:
    kind, sep, rest = uid.partition('::"')
    if sep and _TYPE.match(kind) and rest.endswith('"') and _PLAIN_ID.match(rest[:-1]):
        return {"type": kind, "id": rest[:-1]}
    return uid


def action_uid(value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise MalformedError("action", "must be a non-empty string")
    return _action_uid(value)


@lru_cache(maxsize=1024)
def _action_uid(value: str) -> str:
    return value if value.startswith("Action::") else f"Action::{json.dumps(value, ensure_ascii=False)}"
