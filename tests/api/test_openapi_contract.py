"""The HTTP contract: what ``fiat serve`` answers is what its OpenAPI document says it answers.

A real ``fiat serve`` (a home from ``fiat init``, the example bundle published) listens on a
free port of 127.0.0.1. Its ``/openapi.json`` is loaded with schemathesis, which generates
requests for every operation — data that fits the schema (positive) and data that does not
(negative) — sends them over HTTP and applies three checks to each response:

* ``not_a_server_error`` — no 5xx, whatever the input;
* ``status_code_conformance`` — the status is one the operation declares;
* ``content_type_conformance`` — the content type is the one declared for that status
  (``application/problem+json`` for every error, RFC 9457 §3).

Admin operations carry the home's admin bearer token; DPoP-protected ones carry a fresh,
valid proof (RFC 9449) of the home's runtime key, and ``POST /v1/authorize`` names that key
as ``runtimeKid`` in positive cases, so generated requests reach the authority itself rather
than stopping at the credential check. The run is bounded and deterministic:
``max_examples`` per operation and mode, no example database, derandomized generation.

``GET /v1/trust/stream`` (server-sent events: the response never ends) is not generated; its
200 and its declared ``text/event-stream`` are checked by hand with a streamed request.

Before the routes declared their errors, this run failed on every operation (each answered
a 4xx problem the document did not list, and the document promised FastAPI's ``422
HTTPValidationError`` JSON, which this server never sends: validation errors are 400 problems).
It found no 5xx, at this bound or at 150 examples per operation and mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import requests
import schemathesis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from fiat.authorize.dpop import make_proof
from support import EXAMPLES
from support.processes import FiatServer, clean_env, ok
from support.processes import fiat_text as fiat

PROBLEM = "application/problem+json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
MAX_EXAMPLES = 20  # per operation and generation mode: 11 operations x 2 modes x 20, a few hundred requests
STREAM = "/v1/trust/stream"
ADMIN_PATHS = {"/v1/revocations", "/v1/enrollments", "/v1/policies", "/v1/approvals"}
DPOP_PATHS = {"/v1/authorize", "/v1/permits/{jti}/consume"}

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Api:
    url: str
    kid: str
    key: Ed25519PrivateKey
    token: str

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def dpop(self, method: str, path: str) -> dict[str, str]:
        return {"DPoP": make_proof(self.key, method, self.url + path)}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("contract")
    home = base / "home"
    ok(fiat("init", "--home", home))
    ok(fiat("policy", "publish", EXAMPLES, "--home", home))

    from fiat.api.credentials import ensure_admin_token
    from fiat.config import load_config
    from fiat.home import keyring

    with clean_env():
        cfg = load_config(home, require=True)
        rec, key = keyring(cfg).signing_key("runtime")
        token = ensure_admin_token(cfg.keys_dir)
    server = FiatServer(home, output=base / "serve.log").start()
    try:
        yield Api(server.url, rec.kid, key, token)
    finally:
        server.stop()
    assert "Traceback" not in server.text(), server.text()[-4000:]


def credentials(api: Api, case: Case) -> dict[str, str]:
    """The headers that let ``case`` past the route's credential check."""
    path = case.operation.path
    if path in DPOP_PATHS:
        return api.dpop(case.method, case.formatted_path)
    if path in ADMIN_PATHS or (path.startswith(("/v1/approvals/", "/v1/bundles/")) and case.method == "GET"):
        return api.admin()
    return {}


def first_failure(
    api: Api, operation: APIOperation, mode: GenerationMode, session: requests.Session, seen: set[tuple[str, int]]
) -> str | None:
    """Up to :data:`MAX_EXAMPLES` ``mode`` cases of ``operation``; the (shrunk) failure, if any.
    ``seen`` collects (operation, status) of every response."""
    last: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    def run(case: Case) -> None:
        if mode is GenerationMode.POSITIVE and operation.path == "/v1/authorize" and isinstance(case.body, dict):
            case.body["runtimeKid"] = api.kid  # past the credential check, into the authority
        response = case.call(session=session, headers=credentials(api, case), timeout=30)
        seen.add((operation.label, response.status_code))
        try:
            case.validate_response(response, checks=CHECKS)
        except (Failure, FailureGroup) as exc:
            last[:] = [f"{exc}\n-> {response.status_code} {response.text[:500]}"]
            raise

    try:
        run()
    except (Failure, FailureGroup):
        return last[0] if last else "failed"
    except Unsatisfiable:
        # No request can break this operation's schema (only free-form string path parameters,
        # no body): there is no negative case to send.
        assert mode is GenerationMode.NEGATIVE and not operation.body, operation.label
        return None
    return None


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_answers_as_its_openapi_document_says(api: Api, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(api.url + "/openapi.json")
    failures: dict[str, str] = {}
    seen: set[tuple[str, int]] = set()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.path != STREAM and (failure := first_failure(api, operation, mode, session, seen)):
                failures[operation.label] = failure
    assert not failures, "\n\n".join(f"{label}:\n{detail}" for label, detail in failures.items())
    if mode is GenerationMode.POSITIVE:
        # The credentials worked: generated requests got past the credential check to the route itself.
        for label in ("POST /v1/authorize", "POST /v1/policies", "GET /v1/approvals", "GET /v1/bundles/{jti}"):
            assert {status for op, status in seen if op == label} - {401, 403}, (label, sorted(seen))


def test_every_error_is_declared_as_problem_json(api: Api) -> None:
    """Each operation declares its 4xx/5xx as ``application/problem+json`` (and none as plain JSON),
    FastAPI's own 422 ``HTTPValidationError`` does not appear (validation errors are 400 problems)."""
    doc = httpx.get(api.url + "/openapi.json").json()
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    problem = doc["components"]["schemas"]["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            errors = {code: r for code, r in op["responses"].items() if code[0] in "45"}
            validated = op.get("requestBody") or any(p["in"] == "query" for p in op.get("parameters", []))
            assert "400" in errors or not validated, (method, path)  # a body or a query that can fail validation
            for code, response in errors.items():
                assert list(response["content"]) == [PROBLEM], (method, path, code)
                assert response["content"][PROBLEM]["schema"] == {"$ref": "#/components/schemas/ProblemDetails"}


def test_what_a_drain_refuses_is_declared_as_503_with_retry_after(api: Api) -> None:
    """The routes that call ``refuse_while_draining`` (fiat.serving's shutdown drain) declare
    its 503 and the ``Retry-After`` header; no other route does."""
    doc = httpx.get(api.url + "/openapi.json").json()
    with_503 = {
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method, op in operations.items()
        if "503" in op["responses"]
    }
    assert with_503 == {
        ("POST", "/v1/authorize"),
        ("POST", "/v1/permits/{jti}/consume"),
        ("GET", STREAM),
        ("GET", "/v1/events/stream"),  # the pages' live stream refuses new ones too
        ("POST", "/v1/demo/runs"),  # no demo run starts while the server drains (fiat.api.routes.demo)
    }
    for method, path in with_503:
        assert "Retry-After" in doc["paths"][path][method.lower()]["responses"]["503"]["headers"]


def test_trust_stream_is_declared_as_server_sent_events(api: Api) -> None:
    doc = httpx.get(api.url + "/openapi.json").json()
    declared = doc["paths"][STREAM]["get"]["responses"]
    assert list(declared["200"]["content"]) == ["text/event-stream"]
    assert list(declared["503"]["content"]) == [PROBLEM]
    with httpx.stream("GET", api.url + STREAM, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].split(";")[0] == "text/event-stream"
        first = next(r.iter_lines())
        assert first.startswith(("event: trust-state", ": keep-alive")), first
