"""Who may call: the admin bearer token, and DPoP proofs (RFC 9449) by enrolled keys.

Every refusal here counts ``auth_failures_total``.

The admin token is ``<home>/keys/admin.token`` (:mod:`fiat.keys.admin_token`). The server
refuses to start without a strong one: a missing, empty or guessable file must never make
anyone admin. A proof's ``htu`` must name the configured public URL
(``server.public_url``) and the request's path: the ``Host`` header and forwarded headers,
which the caller chooses, never decide what URL the authority has (RFC 9449 §4.3 step 9).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter
from collections.abc import Callable

from fastapi import Request

from fiat.api.problems import Problem, refused
from fiat.authorize.dpop import DpopError, DpopVerifier
from fiat.errors import AdminTokenError
from fiat.keys.admin_token import ensure_admin_token, read_admin_token, token_problem
from fiat.persist.protocols import ReplayCache

__all__ = ["Credentials", "ensure_admin_token", "read_admin_token"]


class Credentials:
    """Checks a request's credentials; raises a 401/403 :class:`Problem` when they do not hold."""

    def __init__(
        self,
        admin_token: str,
        is_enrolled: Callable[[str], bool],
        metrics: Counter[str],
        role_of: Callable[[str], str | None] | None = None,
        *,
        replay: ReplayCache,
        public_url: str,
    ) -> None:
        problem = token_problem(admin_token)
        if problem is not None:  # read_admin_token refuses these first; never compare against one
            raise AdminTokenError(f"the admin token cannot be used: {problem}")
        self._admin_hash = hashlib.sha256(admin_token.encode()).digest()
        self._is_enrolled = is_enrolled
        self._role_of = role_of
        self._dpop = DpopVerifier(replay)
        self._public_url = public_url.rstrip("/")
        self._metrics = metrics

    def refuse(self, status: int, detail: str) -> Problem:
        self._metrics["auth_failures_total"] += 1
        return Problem(status, "Unauthorized" if status == 401 else "Forbidden", detail)

    def runtime_proof(self, request: Request) -> tuple[str, bytes]:
        """The key id and public key of the request's one valid DPoP proof by an enrolled key."""
        proofs = request.headers.getlist("dpop")
        if len(proofs) > 1:  # RFC 9449 §4.3 step 1: exactly one
            raise self.refuse(401, "send exactly one DPoP header")
        try:
            # RFC 9449 §4.3 step 9: the URI of the request is the authority's public URL and the path
            # (no query or fragment); not a URL built from the Host or X-Forwarded-* headers.
            return self._dpop.verify(
                proofs[0] if proofs else None,
                request.method,
                self._public_url + request.url.path,
                allow=self._is_enrolled,
            )
        except DpopError as exc:  # 401, or 403 for a key that is not enrolled (by type)
            self._metrics["auth_failures_total"] += 1
            raise refused(exc, detail=exc.reason) from exc

    def require_admin(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        ok = (
            scheme.lower() == "bearer"
            and token != ""  # never admin by an empty value, whatever the token file held
            and hmac.compare_digest(hashlib.sha256(token.encode()).digest(), self._admin_hash)
        )
        if not ok:
            raise self.refuse(401, "this endpoint needs the admin bearer token (<home>/keys/admin.token)")

    def admin_or_enrolled(self, request: Request) -> None:
        """The admin token, or a DPoP proof by any enrolled key (runtimes, approvers)."""
        if request.headers.get("authorization"):
            self.require_admin(request)
        else:
            self.runtime_proof(request)  # refuses keys that are not enrolled

    def admin_or_approver(self, request: Request) -> None:
        """The admin token, or a DPoP proof by an enrolled *approver* key (not a runtime's)."""
        if request.headers.get("authorization"):
            self.require_admin(request)
            return
        kid, _ = self.runtime_proof(request)
        if self._role_of is None or self._role_of(kid) != "approver":
            raise self.refuse(403, "listing approvals needs an approver key or the admin token")
