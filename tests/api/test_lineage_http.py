"""``GET /v1/lineage`` and ``GET /v1/lineage/{jti}/node`` against a real ``fiat serve`` and a real
three-generation chain (``fiat run`` → child ``fiat run --parent`` → grandchild: tests/support/lineage_chain.py).

The lineage API is public and read-only, like the log; the bundle stays behind admin-or-enrolled.
Query parameters are checked strictly: every mistake is a 400 problem that says what to send.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.lineage_chain import EXAMPLES, PRINCIPAL, renewing_home, run_chain, run_renewed
from support.processes import FiatServer, ok
from support.processes import fiat_text as fiat_cli


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    home = tmp_path_factory.mktemp("lineage") / "home"
    ok(fiat_cli("init", "--home", home, "--json"))
    ok(fiat_cli("policy", "publish", EXAMPLES, "--home", home, "--json"))
    s = FiatServer(home).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def chain(server: FiatServer, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return run_chain(server, tmp_path_factory.mktemp("chain"))


def get(server: FiatServer, path: str, **params: str) -> httpx.Response:
    return httpx.get(server.url + path, params=params, timeout=30)


def test_a_permit_shows_its_whole_three_generation_chain(server: FiatServer, chain: list[str]) -> None:
    root, child, grand = chain
    for member in chain:
        r = get(server, "/v1/lineage", permit=member)
        assert r.status_code == 200, r.text
        dag = r.json()
        nodes = {n["id"]: n for n in dag["nodes"]}
        assert list(nodes) == [root, child, grand]
        assert sorted((e["from"], e["to"], e["kind"]) for e in dag["edges"]) == sorted(
            [(root, child, "parent"), (child, grand, "parent")]
        )
    assert [nodes[j]["depth"] for j in chain] == [0, 1, 2]
    assert [nodes[j]["parent"] for j in chain] == [None, root, child]
    for n in nodes.values():
        assert n["principal"] == PRINCIPAL and n["action"] == "shell:run" and n["resource"] == "repo:fiat"
        assert n["state"] == "ended"  # each generation ran to completion and logged its receipt
        assert n["receipt"]["outcome"] == "completed" and n["receipt"]["haltReason"] is None
        assert n["decision"]["decision"] == "allow" and n["decision"]["determiningPolicies"]
        assert n["receipt"]["logIndex"] > n["decision"]["logIndex"]
        assert n["iat"].endswith("Z") and n["renewedFrom"] is None and n["approvals"] == []


def test_a_principal_search_is_a_forest_of_its_chains(server: FiatServer, chain: list[str]) -> None:
    dag = get(server, "/v1/lineage", principal=PRINCIPAL, since="2000-01-01T00:00:00Z", limit="10").json()
    assert {n["id"] for n in dag["nodes"]} == set(chain)
    assert set(dag["matches"]) == set(chain) and len(dag["edges"]) == 2
    assert get(server, "/v1/lineage", principal="agent:nobody").json()["nodes"] == []
    assert get(server, "/v1/lineage", since="2999-01-01T00:00:00+02:00").json()["nodes"] == []
    assert {n["id"] for n in get(server, "/v1/lineage", until="2999-01-01T00:00:00Z").json()["nodes"]} == set(chain)
    # Attack: a filter is a bound value, never SQL.
    assert get(server, "/v1/lineage", principal="agent:x' OR '1'='1").json()["nodes"] == []


def test_a_node_shows_its_permit_decision_receipt_and_proofs(server: FiatServer, chain: list[str]) -> None:
    root, child, grand = chain
    r = get(server, f"/v1/lineage/{grand}/node")
    assert r.status_code == 200, r.text
    node: dict[str, Any] = r.json()
    assert node["claims"]["jti"] == grand and node["claims"]["parent"] == child
    assert node["claims"]["delegation"]["depth"] == 2
    assert node["request"]["principal"] == PRINCIPAL
    assert node["decision"]["predicate"]["decision"] == "allow"
    assert node["receipt"]["predicate"]["outcome"] == "completed"
    assert node["receipt"]["predicate"]["permit"]["jti"] == grand
    kinds = {e["kind"] for e in node["entries"]}
    assert {"permit", "decision", "receipt"} <= kinds
    assert all(e["proofAvailable"] for e in node["entries"]) and node["permit"]["proofAvailable"]
    assert node["bundle"] == f"/v1/bundles/{grand}" and node["verify"] == f"/ui/verify#{grand}"
    assert get(server, f"/v1/lineage/{child}/node").json()["children"] == [grand]
    assert get(server, f"/v1/lineage/{root}/node").json()["state"] == "ended"


def test_a_node_publishes_no_more_of_the_request_than_the_log_does(server: FiatServer, chain: list[str]) -> None:
    # Attack: the action request's context (the command line here; a tool call's arguments through
    # the MCP gateway) is in the bundle, behind its credential, and only as a digest in the log.
    # The public node view must not hand it to anyone who asks.
    def contexts(value: Any) -> list[Any]:  # every "context" member anywhere in an answer
        if isinstance(value, dict):
            return [v for k, v in value.items() if k == "context"] + [c for v in value.values() for c in contexts(v)]
        return [c for v in value for c in contexts(v)] if isinstance(value, list) else []

    for jti in chain:
        r = get(server, f"/v1/lineage/{jti}/node")
        assert set(r.json()["request"]) == {"principal", "action", "resource", "parent", "contextDigest"}
        assert "generation.py" not in r.text
        assert '"argv"' not in r.text
        assert all(set(c) == {"sha256"} for c in contexts(r.json())), contexts(r.json())  # digests only
        assert len(r.json()["request"]["contextDigest"]["sha256"]) == 64
    dag = get(server, "/v1/lineage", permit=chain[0]).text
    assert "generation.py" not in dag and '"argv"' not in dag


def test_the_bundle_stays_behind_its_credential(server: FiatServer, chain: list[str]) -> None:
    """Attack: the public lineage API is no way round the bundle's admin-or-enrolled rule."""
    r = get(server, f"/v1/bundles/{chain[2]}")
    assert r.status_code == 401, r.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"color": "red"}, "unknown query parameter 'color'"),
        ({"since": "yesterday"}, "RFC 3339"),
        ({"since": "2026-12-02T12:00:00"}, "with an offset"),
        ({"until": "2026-12-02"}, "RFC 3339"),
        ({"since": "2026-12-03T00:00:00Z", "until": "2026-12-02T00:00:00Z"}, "since is after until"),
        ({"limit": "0"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "501"}, "limit must be a whole number from 1 to 500"),
        ({"limit": "-1"}, "limit must be"),
        ({"limit": "ten"}, "limit must be"),
        ({"permit": "pmt_x", "principal": "agent:a"}, "permit names one chain"),
        ({"principal": "x" * 513}, "1 to 512 printable characters"),
        ({"principal": "agent:\x07bell"}, "printable"),
        ({"permit": ""}, "1 to 512"),
    ],
)
def test_bad_query_parameters_are_400_problems_that_say_what_to_send(
    server: FiatServer, params: dict[str, str], says: str
) -> None:
    r = get(server, "/v1/lineage", **params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert says in r.json()["detail"]


def test_a_repeated_parameter_is_refused(server: FiatServer) -> None:
    r = httpx.get(server.url + "/v1/lineage?principal=a&principal=b", timeout=30)
    assert r.status_code == 400 and "more than once" in r.json()["detail"]


def test_an_unknown_permit_is_404(server: FiatServer) -> None:
    for path in ("/v1/lineage?permit=pmt_never", "/v1/lineage/pmt_never/node"):
        r = httpx.get(server.url + path, timeout=30)
        assert r.status_code == 404, r.text
        assert "no permit 'pmt_never'" in r.json()["detail"]


@pytest.fixture(scope="module")
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FiatServer]:
    """The example policies with the shell permit's lifetime cut to 3 s, so a 5 s command is renewed."""
    s = FiatServer(renewing_home(tmp_path_factory.mktemp("renewing"))).start()
    try:
        yield s
    finally:
        s.stop()


def test_a_renewed_execution_is_a_chain_of_renewal_edges(short_server: FiatServer) -> None:
    run_renewed(short_server)
    first = get(short_server, "/v1/lineage", principal=PRINCIPAL).json()
    nodes = {n["id"]: n for n in first["nodes"]}
    renewals = [(e["from"], e["to"]) for e in first["edges"] if e["kind"] == "renewal"]
    assert len(nodes) >= 2 and len(renewals) == len(nodes) - 1, first
    assert not [e for e in first["edges"] if e["kind"] == "parent"]
    head = [j for j, n in nodes.items() if n["renewedFrom"] is None]
    assert len(head) == 1  # one original permit; every other one renews its predecessor
    for pred, succ in renewals:
        assert nodes[succ]["renewedFrom"] == pred and nodes[pred]["renewedBy"] == succ
        assert nodes[pred]["state"] == "renewed"
    last = next(j for j, n in nodes.items() if n["renewedBy"] is None)
    assert nodes[last]["state"] == "ended" and nodes[last]["receipt"]["outcome"] == "completed"
    # The chain from any member is the same whole chain.
    assert {n["id"] for n in get(short_server, "/v1/lineage", permit=last).json()["nodes"]} == set(nodes)
    assert get(short_server, f"/v1/lineage/{head[0]}/node").json()["renewedBy"] == nodes[head[0]]["renewedBy"]


def test_a_revocation_of_the_root_marks_its_whole_lineage_revoked(short_server: FiatServer, tmp_path: Path) -> None:
    """A revocation covers a permit's renewals and lineage descendants (docs/formats.md, "Renewal and
    revocation"): after the root's, every node of its chain reads ``revoked``, whatever it was before."""
    root, child, grand = run_chain(short_server, tmp_path / "chain")
    # 3 s permits: a generation may be renewed while its children run; the DAG mixes both kinds of edge.
    dag = get(short_server, "/v1/lineage", permit=grand).json()
    before = {n["id"]: n["state"] for n in dag["nodes"]}
    # (A renewal issued as its execution was ending is live, unused, until it expires: on a loaded
    # machine a guard may ask for one and end before it is needed.)
    assert {root, child, grand} <= set(before) and set(before.values()) <= {"ended", "renewed", "live"}
    assert sum(e["kind"] == "parent" for e in dag["edges"]) == 2
    assert sum(e["kind"] == "renewal" for e in dag["edges"]) == len(before) - 3
    ok(fiat_cli("revoke", "--home", short_server.home, "--url", short_server.url, "--permit", root, "--reason", "test"))
    after = get(short_server, "/v1/lineage", permit=grand).json()
    assert {n["id"]: n["state"] for n in after["nodes"]} == dict.fromkeys(before, "revoked")
    assert get(short_server, f"/v1/lineage/{grand}/node").json()["state"] == "revoked"
    # Other lineages of the same principal are not covered.
    others = get(short_server, "/v1/lineage", principal=PRINCIPAL).json()["nodes"]
    assert {n["state"] for n in others if n["id"] not in before} <= {"renewed", "ended", "live", "expired"}
