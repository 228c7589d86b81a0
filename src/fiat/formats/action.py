"""The action request: what an execution is, exactly, and its digest.

``digest = SHA-256(RFC 8785(action request))`` where the request is::

    {"principal": str, "action": str, "resource": str, "context": {...}, "parent": str | null}

A principal has one spelling, its Cedar entity UID (:func:`entity_uid`): ``user:alice`` and
``User::"alice"`` name the same principal, for revocations, policy and approvals alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fiat.errors import MalformedError
from fiat.formats.encoding import json_digest
from fiat.formats.jcs import canonical_string, canonicalize


def entity_uid(value: str, what: str) -> str:
    """A principal's or resource's one spelling, as a Cedar entity UID: ``Type::"id"`` stays;
    ``kind:id`` becomes ``Kind::"id"``. Revocations name principals this way, and the offline
    verifier compares a bundle's revocations with a permit's ``sub`` through it."""
    if not isinstance(value, str) or not value or len(value) > 1024:
        raise MalformedError(what, "must be a non-empty string of at most 1,024 characters")
    return _entity_uid(value, what)


@lru_cache(maxsize=4096)
def _entity_uid(value: str, what: str) -> str:
    if '::"' in value and value.endswith('"'):
        return value
    kind, sep, ident = value.partition(":")
    if not sep or not kind or not ident or not kind.replace("_", "").isalnum():
        raise MalformedError(what, f'{value!r} is neither Type::"id" nor kind:id')
    # Raw UTF-8 (Cedar reads ``"zoë"``, not ``"zo\\u00eb"``), so both spellings name one principal.
    return f"{kind[0].upper()}{kind[1:]}::{json.dumps(ident, ensure_ascii=False)}"


def action_request(
    principal: str, action: str, resource: str, context: dict[str, Any] | None = None, parent: str | None = None
) -> dict[str, Any]:
    for name, value in (("principal", principal), ("action", action), ("resource", resource)):
        if not isinstance(value, str) or not value:
            raise MalformedError("action request", f"{name} must be a non-empty string")
    if context is not None and not isinstance(context, dict):
        raise MalformedError("action request", "context must be a JSON object")
    if parent is not None and not isinstance(parent, str):
        raise MalformedError("action request", "parent must be a permit id")
    request = {
        "principal": principal,
        "action": action,
        "resource": resource,
        "context": {} if context is None else context,
        "parent": parent,
    }
    json_digest(request)  # fail early on anything that cannot be canonicalized
    return request


@dataclass(frozen=True)
class EncodedRequest:
    """An action request with its RFC 8785 bytes and digests, each computed once."""

    request: dict[str, Any]
    canonical: bytes  # RFC 8785 bytes of the request
    digest: str  # SHA-256 of ``canonical``: the action digest
    context_digest: str  # SHA-256 of the RFC 8785 bytes of the context alone


def encode_action_request(
    principal: str,
    action: str,
    resource: str,
    context: dict[str, Any] | None = None,
    parent: str | None = None,
    *,
    encode: Callable[[Any], bytes] = canonicalize,
) -> EncodedRequest:
    """The action request, canonicalizing its context once for both digests.

    The request's members sort as ``action, context, parent, principal, resource``
    (RFC 8785 §3.2.3; all ASCII), so its canonical form is the canonical context
    placed between the canonical strings: the same bytes ``canonicalize`` gives.
    """
    request = {
        "principal": principal,
        "action": action,
        "resource": resource,
        "context": {} if context is None else context,
        "parent": parent,
    }
    _check(request)
    ctx = encode(request["context"])  # RFC 8785 bytes; a faster encoder of the same bytes may be passed
    canonical = b"".join(
        (
            b'{"action":',
            canonical_string(action),
            b',"context":',
            ctx,
            b',"parent":',
            b"null" if parent is None else canonical_string(parent),
            b',"principal":',
            canonical_string(principal),
            b',"resource":',
            canonical_string(resource),
            b"}",
        )
    )
    return EncodedRequest(request, canonical, hashlib.sha256(canonical).hexdigest(), hashlib.sha256(ctx).hexdigest())


def _check(request: dict[str, Any]) -> None:
    for name in ("principal", "action", "resource"):
        if not isinstance(request[name], str) or not request[name]:
            raise MalformedError("action request", f"{name} must be a non-empty string")
    if not isinstance(request["context"], dict):
        raise MalformedError("action request", "context must be a JSON object")
    if request["parent"] is not None and not isinstance(request["parent"], str):
        raise MalformedError("action request", "parent must be a permit id")


def action_digest(request: dict[str, Any]) -> str:
    return json_digest(request)


#: The most (action, resource) pairs a ``scope`` may name (docs/formats.md, "Delegation").
MAX_SCOPE = 256


def check_scope(value: Any, what: str = "scope") -> list[dict[str, str]]:
    """A delegation scope: a list of at most :data:`MAX_SCOPE` ``{"action", "resource"}`` pairs,
    each name as an action request's (a non-empty string of at most 1,024 characters; the resource
    an entity name, :func:`entity_uid`). Returns the pairs as given (order kept, duplicates dropped);
    anything else raises :class:`MalformedError`."""
    if not isinstance(value, list) or len(value) > MAX_SCOPE:
        raise MalformedError(what, f"must be a list of at most {MAX_SCOPE} {{action, resource}} pairs")
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for i, pair in enumerate(value):
        if not isinstance(pair, dict) or set(pair) != {"action", "resource"}:
            raise MalformedError(what, f"item {i} must be an object with exactly an action and a resource")
        action, resource = pair["action"], pair["resource"]
        if not isinstance(action, str) or not action or len(action) > 1024:
            raise MalformedError(what, f"item {i}: action must be a non-empty string of at most 1,024 characters")
        entity_uid(resource, f"{what} item {i} resource")
        if (action, resource) not in seen:
            seen.add((action, resource))
            out.append({"action": action, "resource": resource})
    return out


def scope_pairs(scope: list[dict[str, str]]) -> frozenset[tuple[str, str]]:
    """A checked scope as a set of (action, resource UID) pairs: resources compared in their one spelling."""
    return frozenset((p["action"], entity_uid(p["resource"], "scope resource")) for p in scope)
