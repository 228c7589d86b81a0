"""Permissible pairs (``PolicyBundle.permissible``): Cedar's partial evaluation, context unknown.

A pair is permissible iff partial evaluation is not a definite Deny. Checked on a small real
bundle written here, and by a property: whenever some generated context makes the real
evaluation Allow, the pair is permissible (soundness); a pair no context permits, among the
generated ones, is reported only where Cedar leaves a residual (the documented false positives).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fiat.authorize.policy import PolicyBundle, load_bundle
from fiat.errors import MalformedError
from support.permissible import write_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> PolicyBundle:
    b = load_bundle(write_bundle(tmp_path_factory.mktemp("permissible") / "policies"))
    assert b.validate() == []
    return b


def test_each_rule(bundle: PolicyBundle) -> None:
    pairs = [
        ("pay", "tool:payments"),  # permitted when amount_cents < 5000: some context allows
        ("pay", "tool:other"),  # the permit names another resource
        ("read", "tool:x"),  # bob is in Team::"ops": the hierarchy is honoured
        ("wipe", "tool:x"),  # an unconditional forbid
        ("burn", "tool:x"),  # a permit for carol only
        ("ship", "tool:x"),  # a forbid with a condition: still permissible
        ("peek", "tool:x"),  # a @shadow permit only
        ("never", "tool:x"),  # a condition no context satisfies: a documented false positive
        ("unheard-of", "tool:x"),  # an action neither policy nor schema names
    ]
    assert bundle.permissible("agent:bob", pairs) == [True, False, True, False, False, True, False, True, False]
    assert bundle.permissible("agent:carol", [("burn", "tool:x"), ("read", "tool:x")]) == [True, False]
    # A principal entities.json does not hold is an entity without parents, as in a real evaluation.
    assert bundle.permissible("agent:dave", [("read", "tool:x"), ("pay", "tool:payments")]) == [False, True]
    assert bundle.permissible('Agent::"bob"', []) == []


def test_agrees_with_real_evaluation_where_the_context_does_not_matter(bundle: PolicyBundle) -> None:
    facts = {"time": 0, "weekday": 0, "runtime": "r", "environment": {"verified": False, "digest": ""}}
    ctx = {"input": {}, "fiat": {**facts, "lineageDepth": 0}}
    for principal in ("agent:bob", "agent:carol", "agent:dave"):
        for action in ("read", "wipe", "burn", "peek"):
            real = bundle.evaluate(principal, action, "tool:x", ctx).allowed
            assert bundle.permissible(principal, [(action, "tool:x")]) == [real], (principal, action)


def test_a_bundle_in_shadow_mode_permits_nothing(tmp_path: Path) -> None:
    b = load_bundle(write_bundle(tmp_path / "policies", shadow_mode=True))
    assert b.permissible("agent:carol", [("burn", "tool:x"), ("pay", "tool:payments")]) == [False, False]


@pytest.mark.parametrize(("principal", "pair"), [("nobody", ("pay", "tool:x")), ("agent:bob", ("pay", "tool"))])
def test_malformed_names_are_refused(bundle: PolicyBundle, principal: str, pair: tuple[str, str]) -> None:
    with pytest.raises(MalformedError):
        bundle.permissible(principal, [pair])


# -- soundness: every context that allows implies permissible ----------------------------------

INPUTS = st.fixed_dictionaries(
    {},
    optional={
        "amount_cents": st.integers(-(2**63), 2**63 - 1) | st.integers(4990, 5010),
        "currency": st.sampled_from(["EUR", "USD", ""]),
        "urgent": st.booleans(),
        "to": st.sampled_from(["mars", "moon"]),
    },
)
FACTS = st.fixed_dictionaries(
    {
        "time": st.integers(0, 2**40),
        "weekday": st.integers(0, 6),
        "runtime": st.text(max_size=4),
        "environment": st.fixed_dictionaries({"verified": st.booleans(), "digest": st.text(max_size=4)}),
        "lineageDepth": st.integers(-3, 3),
    }
)
ACTIONS = ["pay", "read", "wipe", "burn", "ship", "peek", "never"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    principal=st.sampled_from(["agent:bob", "agent:carol", "agent:dave"]),
    action=st.sampled_from(ACTIONS),
    resource=st.sampled_from(["tool:payments", "tool:x"]),
    inputs=INPUTS,
    facts=FACTS,
)
def test_allowed_in_some_context_implies_permissible(
    bundle: PolicyBundle, principal: str, action: str, resource: str, inputs: dict[str, Any], facts: dict[str, Any]
) -> None:
    evaluation = bundle.evaluate(principal, action, resource, {"input": inputs, "fiat": facts})
    if evaluation.allowed:
        assert bundle.permissible(principal, [(action, resource)]) == [True]
