"""A client of ``fiat serve``: DPoP-proven runtime calls, signed approvals, admin calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fiat import tls
from fiat.authorize.dpop import make_proof
from fiat.errors import FiatError
from fiat.prove import evidence as ev


class ClientError(FiatError):
    """The server refused a request or cannot be reached.

    A refusal's message names the request and the RFC 9457 problem, e.g.
    ``GET http://127.0.0.1:8080/v1/bundles/xyz: 404 Not Found: no permit 'xyz' ...``;
    ``status`` is the HTTP status (None when the server could not be reached).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _refusal(r: httpx.Response) -> str:
    """``<status> <title>[: <detail>]`` from an RFC 9457 problem (or the start of any other body)."""
    title, detail = r.reason_phrase or "", ""
    try:
        body = r.json()
    except ValueError:
        detail = " ".join(r.text[:200].split())
    else:
        if isinstance(body, dict):
            title = str(body.get("title") or title)
            detail = str(body.get("detail") or "")
    head = f"{r.status_code} {title}".rstrip()
    return f"{head}: {detail}" if detail and detail != title else head


class AuthorityClient:
    """``clock`` dates the DPoP proofs (``iat``, RFC 9449 §4.2). A governed session sets it to
    its steady clock (:mod:`fiat.enforce.clock`): after a wall-clock step the authority, on its
    own clock, would refuse proofs dated by the stepped one, and renewals with them."""

    def __init__(self, url: str, timeout: float = 30.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url.rstrip("/")
        self.clock = clock
        self._http = httpx.Client(timeout=timeout, verify=tls.client_context())  # server.tls_ca (fiat.tls)

    def _proof(self, key: Ed25519PrivateKey, method: str, url: str) -> str:
        return make_proof(key, method, url, now=int(self.clock()))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AuthorityClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kw: Any) -> Any:
        url = self.url + path
        try:
            r = self._http.request(method, url, **kw)
        except httpx.HTTPError as exc:
            untrusted = tls.untrusted_certificate(exc)
            if untrusted is not None:
                raise ClientError(f"refusing the authority at {self.url}: {untrusted}") from exc
            raise ClientError(f"cannot reach the authority at {self.url}: {exc}; is `fiat serve` running?") from exc
        if r.status_code >= 400:
            raise ClientError(f"{method} {url}: {_refusal(r)}", r.status_code)
        return r.json()

    # runtime calls, proven with DPoP (RFC 9449)
    def authorize(self, key: Ed25519PrivateKey, kid: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.url + "/v1/authorize"
        proof = self._proof(key, "POST", url)
        return dict(self._request("POST", "/v1/authorize", json={**body, "runtimeKid": kid}, headers={"DPoP": proof}))

    def permissible(
        self, key: Ed25519PrivateKey, principal: str, candidates: Sequence[tuple[str, str]]
    ) -> tuple[str, list[bool]]:
        """Which (action, resource) ``candidates`` some request by ``principal`` could be permitted:
        the active policy's digest and one flag per candidate, in order. Proven with the runtime
        ``key`` (DPoP, RFC 9449) as :meth:`authorize` is. A listing, never a grant."""
        path = "/v1/authorize/permissible"
        body = {"principal": principal, "candidates": [{"action": a, "resource": r} for a, r in candidates]}
        got = self._request("POST", path, json=body, headers={"DPoP": self._proof(key, "POST", self.url + path)})
        return str(got["policyDigest"]), [bool(x) for x in got["permissible"]]

    def receipt(self, envelope: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Log an execution receipt; ``timeout`` (seconds) bounds this one request. Idempotent:
        the same receipt again answers the same ``logIndex``."""
        kw: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return dict(self._request("POST", "/v1/receipts", json={"envelope": envelope}, **kw))

    def bundle(self, key: Ed25519PrivateKey, jti: str) -> dict[str, Any]:
        path = f"/v1/bundles/{jti}"
        return dict(self._request("GET", path, headers={"DPoP": self._proof(key, "GET", self.url + path)}))

    def consume(self, key: Ed25519PrivateKey, jti: str) -> dict[str, Any]:
        path = f"/v1/permits/{jti}/consume"
        return dict(self._request("POST", path, headers={"DPoP": self._proof(key, "POST", self.url + path)}))

    def approval(
        self, key: Ed25519PrivateKey | None, approval_id: str, admin_token: str | None = None
    ) -> dict[str, Any]:
        path = f"/v1/approvals/{approval_id}"
        if admin_token is not None:
            headers = {"Authorization": f"Bearer {admin_token}"}
        elif key is not None:
            headers = {"DPoP": self._proof(key, "GET", self.url + path)}
        else:
            raise ClientError("reading an approval needs an enrolled key or the admin token")
        return dict(self._request("GET", path, headers=headers))

    def approvals(self, key: Ed25519PrivateKey, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The newest approvals (with ``status``, when given), read with an enrolled key."""
        path = "/v1/approvals"
        query = {"limit": str(limit), **({"status": status} if status else {})}
        headers = {"DPoP": self._proof(key, "GET", self.url + path)}
        return list(self._request("GET", path, params=query, headers=headers))

    def decide(
        self, approval_id: str, approve: bool, key: Ed25519PrivateKey, kid: str, name: str, reason: str = ""
    ) -> dict[str, Any]:
        """Read the approval, sign an approval statement bound to its action digest, send it."""
        current = self.approval(key, approval_id)
        statement = ev.approval_statement(
            approval_id=approval_id,
            decision="approve" if approve else "deny",
            approver=name,
            request_digest=current["actionDigest"],
            at=time.time(),
            reason=reason,
        )
        envelope = ev.sign_statement(statement, [(kid, key)])
        return dict(self._request("POST", f"/v1/approvals/{approval_id}", json={"envelope": envelope.to_json()}))

    # admin calls
    def _admin(self, token: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request(method, path, json=body, headers={"Authorization": f"Bearer {token}"}))

    def revoke(self, token: str, kind: str, target: str, reason: str) -> dict[str, Any]:
        return self._admin(token, "POST", "/v1/revocations", {"kind": kind, "target": target, "reason": reason})

    def enroll(
        self,
        token: str,
        role: str,
        name: str,
        public_key: str,
        groups: tuple[str, ...] = (),
        identity: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"role": role, "name": name, "publicKey": public_key}
        if groups:
            body["groups"] = list(groups)
        if identity is not None:
            body["identity"] = identity
        return self._admin(token, "POST", "/v1/enrollments", body)

    def publish(self, token: str, files: dict[str, str]) -> dict[str, Any]:
        return self._admin(token, "POST", "/v1/policies", {"files": files})

    def trust_state(self, since: int = 0) -> str:
        return str(self._request("GET", f"/v1/trust/state?since={since}")["state"])
