"""The lineage read model: the DAG of permits and executions, for the explorer (``/ui/lineage``).

Nodes are issued permits; edges are the two links docs/formats.md names between them:

* ``parent`` — a sub-execution's permit names its parent's (``parent`` claim, "Delegation");
* ``renewal`` — a renewal permit names the permit it renews (``renews`` claim; one successor per
  predecessor, "Renewal and revocation").

A renewal keeps its predecessor's ``parent``; that parent edge is drawn once, to the first permit
of the renewal chain (each node still carries its own ``parent``).

Everything here is read from the evidence index, the log (each permit's claims and each
statement are read from the entry the index points at, never from a copy) and the authority
store (renewals, revocations). Nothing is written. A node's ``state`` is, first match wins:

* ``revoked`` — a logged revocation covers it (of it, a permit it renews or a lineage ancestor,
  of its principal or its runtime): what the authority itself refuses;
* ``ended`` — its execution's receipt is logged;
* ``renewed`` — a successor permit took over;
* ``expired`` — its ``exp`` has passed;
* ``live`` — otherwise.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any

from fiat.errors import FiatError, MalformedError, NotFoundError
from fiat.formats import jws
from fiat.formats.dsse import Envelope
from fiat.formats.encoding import json_digest, rfc3339
from fiat.formats.statement import Statement
from fiat.persist.protocols import AuthorityStore, EvidenceIndex
from fiat.persist.records import PermitRecord

#: The most nodes one answer carries (a forest of many chains, or one very wide lineage).
MAX_NODES = 1000


class Lineage:
    """Builds lineage DAGs and node details from the stores (read-only)."""

    def __init__(
        self,
        index: EvidenceIndex,
        store: AuthorityStore,
        read_entries: Callable[[int, int], list[bytes]],
        tree_size: Callable[[], int],
        clock: Callable[[], float],
        principal_key: Callable[[str], str],
    ) -> None:
        self.index, self.store = index, store
        self._read, self._size, self._clock, self._principal_key = read_entries, tree_size, clock, principal_key

    # -- the DAG ---------------------------------------------------------------------------

    def chain(self, jti: str) -> dict[str, Any]:
        """The whole connected lineage of permit ``jti`` (root ancestor and every descendant)."""
        records = self.index.lineage(jti, limit=MAX_NODES)
        if not records:
            raise NotFoundError(f"no permit {jti!r} was issued by this authority; check the id (`fiat run` prints it)")
        return self._dag(records, truncated=len(records) >= MAX_NODES)

    def forest(self, *, principal: str | None, since: float | None, until: float | None, limit: int) -> dict[str, Any]:
        """The lineages of the newest ``limit`` permits of ``principal`` issued in ``[since, until]``."""
        found = self.index.find_permits(principal=principal, since=since, until=until, limit=limit)
        records: dict[str, PermitRecord] = {}
        truncated = False
        for p in found:
            if p.jti in records:
                continue  # already in the lineage of a newer match
            for r in self.index.lineage(p.jti, limit=MAX_NODES):
                records.setdefault(r.jti, r)
            if len(records) >= MAX_NODES:
                truncated = True
                break
        dag = self._dag(sorted(records.values(), key=lambda r: r.log_index)[:MAX_NODES], truncated=truncated)
        dag["matches"] = [p.jti for p in found]
        return dag

    def _dag(self, records: list[PermitRecord], truncated: bool) -> dict[str, Any]:
        ids = {r.jti for r in records}
        successors = dict(self.index.renewals(list(ids)))
        predecessor = {succ: pred for pred, succ in successors.items()}
        nodes = [self._node(r, successors, predecessor) for r in records]
        edges: list[dict[str, str]] = []
        parent_of = {r.jti: r.parent for r in records}
        for r in records:
            pred = predecessor.get(r.jti)
            if pred is not None and parent_of.get(pred) == r.parent:
                continue  # a renewal keeps its predecessor's parent: the renewal edge already says so
            if r.parent is not None and r.parent in ids:
                edges.append({"from": r.parent, "to": r.jti, "kind": "parent"})
        for pred, succ in successors.items():
            if pred in ids and succ in ids:
                edges.append({"from": pred, "to": succ, "kind": "renewal"})
        return {"nodes": nodes, "edges": edges, "truncated": truncated}

    def _node(self, r: PermitRecord, successors: dict[str, str], predecessor: dict[str, str]) -> dict[str, Any]:
        request = _request(r.request)
        ev = self._evidence(r.jti)
        receipt = ev["receipt"]
        return {
            "id": r.jti,
            "principal": r.principal,
            "action": request.get("action"),
            "resource": request.get("resource"),
            "iat": None if r.iat is None else rfc3339(r.iat),
            "exp": rfc3339(r.exp),
            "depth": r.depth,
            "runtime": r.runtime,
            "parent": r.parent,
            "renewedFrom": predecessor.get(r.jti),
            "renewedBy": successors.get(r.jti),
            "state": self._state(r, receipt is not None, r.jti in successors),
            "logIndex": r.log_index,
            "receipt": None
            if receipt is None
            else {
                "outcome": receipt["predicate"].get("outcome"),
                "haltReason": receipt["predicate"].get("haltReason"),
                "logIndex": receipt["logIndex"],
            },
            "decision": None
            if ev["decision"] is None
            else {
                "decision": ev["decision"]["predicate"].get("decision"),
                "determiningPolicies": _determining(ev["decision"]["predicate"]),
                "logIndex": ev["decision"]["logIndex"],
            },
            "approvals": [
                {
                    "id": a["predicate"].get("id"),
                    "decision": a["predicate"].get("decision"),
                    "approver": a["predicate"].get("approver"),
                    "logIndex": a["logIndex"],
                }
                for a in ev["approvals"]
            ],
        }

    def _state(self, r: PermitRecord, ended: bool, renewed: bool) -> str:
        if self._revoked(r):
            return "revoked"
        if ended:
            return "ended"
        if renewed:
            return "renewed"
        if r.exp < self._clock():
            return "expired"
        return "live"

    def _revoked(self, r: PermitRecord) -> bool:
        if self.store.is_revoked("runtime", r.runtime):
            return True
        with contextlib.suppress(MalformedError):  # a principal that is no entity name cannot be revoked
            if self.store.is_revoked("principal", self._principal_key(r.principal)):
                return True
        return any(self.store.is_revoked("permit", up) for up in (r.jti, *self.store.ancestry(r.jti)))

    # -- one node's evidence ------------------------------------------------------------------

    def node(self, jti: str) -> dict[str, Any]:
        """Permit ``jti``'s evidence: its claims decoded, request, decision, approvals and receipt
        with their log indexes, and whether each entry has an inclusion proof yet (its index is
        below the latest checkpoint's tree size). The bundle itself stays behind
        ``GET /v1/bundles/{jti}`` (admin or an enrolled runtime)."""
        r = self.index.permit(jti)
        if r is None:
            raise NotFoundError(f"no permit {jti!r} was issued by this authority; check the id (`fiat run` prints it)")
        size = self._size()
        claims = jws.parse(self._entry(r.log_index).decode("ascii")).claims
        ev = self._evidence(jti)
        successor = self.store.successor_of(jti)
        entries = [
            {"kind": link.kind, "logIndex": link.log_index, "proofAvailable": link.log_index < size}
            for link in self.index.entries(jti)
        ]
        return {
            "id": jti,
            "state": self._state(r, ev["receipt"] is not None, successor is not None),
            "claims": claims,
            "request": _public_request(r.request),
            "permit": {"logIndex": r.log_index, "proofAvailable": r.log_index < size},
            "decision": ev["decision"],
            "approvals": ev["approvals"],
            "receipt": ev["receipt"],
            "entries": entries,
            "children": [c.jti for c in self.index.children(jti)],
            "renewedBy": successor,
            "treeSize": size,
            "bundle": f"/v1/bundles/{jti}",
            "verify": f"/ui/verify#{jti}",
        }

    def _entry(self, index: int) -> bytes:
        got = self._read(index, index + 1)
        if not got:
            raise FiatError(f"log entry {index} is missing though the evidence index points at it; run `fiat doctor`")
        return got[0]

    def _evidence(self, jti: str) -> dict[str, Any]:
        """The newest decision and receipt and every approval indexed under ``jti``, each as
        ``{predicate, logIndex}`` read from its log entry."""
        out: dict[str, Any] = {"decision": None, "receipt": None, "approvals": []}
        for link in self.index.entries(jti):
            if link.kind not in ("decision", "receipt", "approval"):
                continue
            statement = Statement.from_envelope(Envelope.parse(self._entry(link.log_index)))
            item = {"predicate": statement.predicate, "logIndex": link.log_index}
            if link.kind == "approval":
                out["approvals"].append(item)
            else:
                out[link.kind] = item
        return out


def _request(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    return value if isinstance(value, dict) else {}


def _public_request(data: bytes) -> dict[str, Any]:
    """What the log itself publishes of an action request (a decision statement's ``request`` and
    ``inputs.context.sha256``, :func:`fiat.prove.evidence.decision_statement`): never the context —
    a command line, a tool call's arguments — which only a bundle (admin or enrolled) carries."""
    request = _request(data)
    public = {k: request.get(k) for k in ("principal", "action", "resource", "parent")}
    public["contextDigest"] = {"sha256": json_digest(request.get("context", {}))}
    return public


def _determining(predicate: dict[str, Any]) -> list[str]:
    policy = predicate.get("policy")
    determining = policy.get("determining") if isinstance(policy, dict) else None
    return [str(p) for p in determining] if isinstance(determining, list) else []
