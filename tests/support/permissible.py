"""A small policy bundle for the permissible-pairs tests (domain and HTTP): each policy one rule."""

from __future__ import annotations

from pathlib import Path

SCHEMA = """
entity Team;
entity Agent in [Team];
entity Tool;
// The facts the authority adds under context.fiat (as in examples/policies).
type FiatFacts = {
  time: Long, weekday: Long, runtime: String, environment: { verified: Bool, digest: String }, lineageDepth: Long,
};
action pay appliesTo {
  principal: [Agent], resource: [Tool],
  context: { input: { amount_cents?: Long, currency?: String, urgent?: Bool }, fiat: FiatFacts }
};
action read appliesTo { principal: [Agent], resource: [Tool], context: { input: {}, fiat: FiatFacts } };
action wipe appliesTo { principal: [Agent], resource: [Tool], context: { input: {}, fiat: FiatFacts } };
action burn appliesTo { principal: [Agent], resource: [Tool], context: { input: {}, fiat: FiatFacts } };
action ship appliesTo {
  principal: [Agent], resource: [Tool], context: { input: { to?: String }, fiat: FiatFacts }
};
action peek appliesTo { principal: [Agent], resource: [Tool], context: { input: {}, fiat: FiatFacts } };
action never appliesTo { principal: [Agent], resource: [Tool], context: { input: {}, fiat: FiatFacts } };
"""

POLICIES = """
@id("small-payments")
permit(principal, action == Action::"pay", resource == Tool::"payments")
when { context.input has amount_cents && context.input.amount_cents < 5000 };

@id("no-euro-urgent")
forbid(principal, action == Action::"pay", resource)
when {
  context.input has currency && context.input.currency == "EUR" && context.input has urgent && context.input.urgent
};

@id("read-by-ops")
permit(principal in Team::"ops", action == Action::"read", resource);

@id("wipe-any")
permit(principal, action == Action::"wipe", resource);

@id("wipe-never")
forbid(principal, action == Action::"wipe", resource);

@id("burn-by-carol")
permit(principal == Agent::"carol", action == Action::"burn", resource);

@id("ship-not-to-mars")
permit(principal, action == Action::"ship", resource);

@id("ship-forbid-mars")
forbid(principal, action == Action::"ship", resource) when { context.input has to && context.input.to == "mars" };

@id("never-satisfiable")
permit(principal, action == Action::"never", resource)
when { context.fiat.lineageDepth < 0 && context.fiat.lineageDepth > 0 };
"""

SHADOW = """
@id("peek-shadow")
@shadow
permit(principal, action == Action::"peek", resource);
"""

ENTITIES = """[
  {"uid": {"type": "Team", "id": "ops"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Agent", "id": "bob"}, "attrs": {}, "parents": [{"type": "Team", "id": "ops"}]},
  {"uid": {"type": "Agent", "id": "carol"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Tool", "id": "payments"}, "attrs": {}, "parents": []}
]"""


def write_bundle(root: Path, shadow_mode: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "schema.cedarschema").write_text(SCHEMA, encoding="utf-8")
    (root / "main.cedar").write_text(POLICIES, encoding="utf-8")
    (root / "shadow.cedar").write_text(SHADOW, encoding="utf-8")
    (root / "entities.json").write_text(ENTITIES, encoding="utf-8")
    if shadow_mode:
        (root / "fiat-policy.toml").write_text("shadow = true\n", encoding="utf-8")
    return root
