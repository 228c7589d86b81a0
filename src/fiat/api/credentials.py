"""Who may call: the admin bearer token, and DPoP proofs (RFC 9449) by enrolled keys.

Every refusal here counts ``auth_failures_total``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fastapi import Request

from fiat.api.problems import Problem, refused
from fiat.authorize.dpop import DpopError, DpopVerifier

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name, not a secret


def ensure_admin_token(keys_dir: Path) -> str:
    """The admin bearer token (created 0600 on first use; never printed by the server)."""
    path = keys_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        keys_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("fiat_admin_" + secrets.token_urlsafe(32) + "\n")
    return path.read_text(encoding="utf-8").strip()


class Credentials:
    """Checks a request's credentials; raises a 401/403 :class:`Problem` when they do not hold."""

    def __init__(
        self,
        admin_token: str,
        is_enrolled: Callable[[str], bool],
        metrics: Counter[str],
        role_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._admin_hash = hashlib.sha256(admin_token.encode()).digest()
        self._is_enrolled = is_enrolled
        self._role_of = role_of
        self._dpop = DpopVerifier()
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
            return self._dpop.verify(
                proofs[0] if proofs else None, request.method, str(request.url), allow=self._is_enrolled
            )
        except DpopError as exc:  # 401, or 403 for a key that is not enrolled (by type)
            self._metrics["auth_failures_total"] += 1
            raise refused(exc, detail=exc.reason) from exc

    def require_admin(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(
            hashlib.sha256(token.strip().encode()).digest(), self._admin_hash
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
