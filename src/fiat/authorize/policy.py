"""Cedar policy bundles: load, validate, evaluate, test — deny by default, forbid wins.

A bundle is a directory::

    policies/
      *.cedar               policies (annotations below), evaluated together
      schema.cedarschema    the Cedar schema (or schema.cedarschema.json, JSON form)
      entities.json         principals, teams, runtimes, resources (Cedar entity JSON)
      fiat-policy.toml      optional: ``shadow = true`` to evaluate the whole bundle in shadow mode
      tests.json            optional: cases for ``fiat policy test``

Request mapping, as AWS AgentCore maps an MCP tool call to Cedar: the
principal is the agent or user, the action is the tool or operation, the
resource is the system acted on, and ``context`` carries the call's arguments
under ``input`` plus the facts the authority adds under ``fiat`` (time,
environment attestation result, runtime, lineage depth).

Identifiers are Cedar entity UIDs (``Agent::"release-bot"``) or the shorthand
``kind:id`` (``agent:release-bot`` → ``Agent::"release-bot"``); actions are
plain names (``deploy`` → ``Action::"deploy"``).

Policy annotations (Cedar ``@name("value")``):

* ``@id("…")`` — the policy's name in decisions and evidence;
* ``@shadow`` — evaluated and logged, never enforced;
* ``@ttl("60")`` — permit lifetime in seconds (the smallest among determining policies wins);
* ``@max_duration("300")`` — the execution's maximum duration in seconds;
* ``@heartbeat_ms("250")`` — the guard's re-verification interval;
* ``@approval("ops")`` — a human approver must approve first;
* ``@single_use`` — the permit can be used once.

Permissible (a meta-question, asked to filter what is listed, never to grant): a pair
(action, resource) is *permissible* for a principal iff Cedar's partial evaluation
(``is_authorized_partial``) of the request with the context left **unknown**, over the
enforced policies and the bundle's entities, is not a definite Deny: it is Allow, or a
residual in which some permit policy may still apply (no forbid policy definitely applies,
else Cedar answers Deny). Sound: whenever some context makes the real request Allow, the pair
is permissible (a residual, once the context is bound, agrees with full evaluation). Not
complete: a condition no context satisfies (``context.input.n < 0 && context.input.n > 0``)
still lists. Shadow policies never count; a bundle in shadow mode permits nothing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

from fiat.authorize.names import action_uid, cedar_request_uid, entity_uid
from fiat.errors import FiatError, MalformedError
from fiat.formats.canonical import compact
from fiat.formats.jcs import canonicalize

DEFAULT_TTL = 60
MAX_TTL = 3600
SCHEMA_NAMES = ("schema.cedarschema", "schema.cedarschema.json")
MAX_FILE = 4 << 20


class PolicyError(FiatError):
    """A policy bundle cannot be loaded, validated or evaluated. Callers deny."""


def cedar_value(value: Any, where: str = "context") -> Any:
    """Check a JSON value fits Cedar's types (no floating point, no null); returns it unchanged."""
    stack = [(value, where)]
    while stack:
        v, at = stack.pop()
        if isinstance(v, bool | str):
            continue
        if isinstance(v, int):
            if not -(2**63) <= v < 2**63:
                raise MalformedError(at, "integers must fit Cedar's 64-bit Long")
        elif isinstance(v, dict):
            for k, x in v.items():
                if not isinstance(k, str):
                    raise MalformedError(at, "attribute names must be strings")
                stack.append((x, f"{at}.{k}"))
        elif isinstance(v, list):
            stack.extend((x, at) for x in v)
        elif isinstance(v, float):
            raise MalformedError(at, "Cedar has no floating point; send the number as an integer or a string")
        elif v is None:
            raise MalformedError(at, "Cedar has no null; omit the attribute instead")
        else:
            raise MalformedError(at, f"unsupported value of type {type(v).__name__}")
    return value


@dataclass(frozen=True)
class Obligations:
    ttl: int = DEFAULT_TTL
    max_duration: int | None = None
    heartbeat_ms: int | None = None
    approval: str | None = None
    single_use: bool = False


@dataclass(frozen=True)
class Evaluation:
    decision: str  # "allow" or "deny"
    determining: tuple[str, ...]  # policy names (@id, else Cedar's id)
    errors: tuple[str, ...]
    obligations: Obligations
    shadow: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (set, decision, determining)

    @property
    def allowed(self) -> bool:
        return self.decision == "allow"


def _int_annotation(value: str, name: str, policy: str, lo: int, hi: int) -> int:
    try:
        n = int(value)
    except ValueError:
        raise PolicyError(f"policy {policy}: @{name}({value!r}) is not a whole number") from None
    if not lo <= n <= hi:
        raise PolicyError(f"policy {policy}: @{name} must be between {lo} and {hi}")
    return n


@dataclass
class _Set:
    text: str
    handle: Any
    names: dict[str, str]  # cedar id -> name
    annotations: dict[str, dict[str, str]]
    actions: frozenset[str] | None = None  # action UIDs some policy is scoped to; None: any action
    permits: tuple[tuple[str, frozenset[str] | None], ...] = ()  # (name, action UIDs or None: any) per permit
    sources: tuple[tuple[str, str], ...] = ()  # (file name, text), concatenated in this order

    def may_apply(self, action: str) -> bool:
        return self.actions is None or action in self.actions

    def locate(self, policy_id: str) -> str | None:
        """``file.cedar:LINE`` where the policy Cedar calls ``policy_id`` begins, if known.

        Cedar numbers the policies of a set ``policy0``, ``policy1``, … in text order; the
        files were concatenated in ``sources`` order, so the k-th policy is found by counting.
        """
        if not policy_id.startswith("policy") or not policy_id[6:].isdigit():
            return None
        k = int(policy_id[6:])
        for name, text in self.sources:
            starts = _policy_starts(text)
            if k < len(starts):
                return f"{name}:{starts[k]}"
            k -= len(starts)
        return None


_EOF = "unexpected end of input"


def _parses(text: str) -> int | None:
    """How many policies ``text`` holds, or None when Cedar cannot parse it."""
    try:
        return len(json.loads(cedarpy.policies_to_json_str(text)).get("staticPolicies", {})) if text.strip() else 0
    except Exception:  # cedarpy raises plain exceptions for parse errors
        return None


def _is_code(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("//")


@functools.lru_cache(maxsize=64)
def _policy_starts(text: str) -> tuple[int, ...]:
    """The 1-based line on which each policy of a file that parses begins (its annotations included).

    Cedar reports no source positions, so the file's line prefixes are parsed: once a prefix
    holds c complete policies, the next policy begins on the next line that is not blank or
    a comment. Only used to explain an error.
    """
    lines = text.splitlines(keepends=True)
    starts: list[int] = []
    count = 0
    waiting = True  # every policy so far is complete: the next code line starts one
    for n, line in enumerate(lines, 1):
        if waiting and _is_code(line):
            starts.append(n)
            waiting = False
        got = _parses("".join(lines[:n]))
        if got is not None and got > count:
            count, waiting = got, True
    return tuple(starts[:count])


def _syntax_error_line(text: str) -> int | None:
    """The line of a file's first syntax error, found by parsing line prefixes (see above)."""
    lines = text.splitlines(keepends=True)
    last_ok = 0
    for n in range(1, len(lines) + 1):
        try:
            cedarpy.policies_to_json_str("".join(lines[:n]))
            last_ok = n
        except Exception as exc:
            if _EOF not in str(exc):
                return n  # an unexpected token on this line
    # Only "unexpected end of input": the policy begun after the last complete prefix never ends.
    return next((n for n in range(last_ok + 1, len(lines) + 1) if _is_code(lines[n - 1])), None)


def _where_parse_fails(texts: list[tuple[str, str]]) -> str:
    """``file.cedar:LINE: `` for the first file Cedar cannot parse on its own, else ``""``."""
    for name, text in texts:
        if _parses(text) is None:
            line = _syntax_error_line(text)
            return f"{name}:{line}: " if line else f"{name}: "
    return ""


def _make_set(texts: list[tuple[str, str]]) -> _Set:
    text = "\n".join(t for _, t in texts)
    try:
        handle = cedarpy.PolicySet.from_str(text) if text.strip() else None
        parsed = json.loads(cedarpy.policies_to_json_str(text)) if text.strip() else {"staticPolicies": {}}
    except Exception as exc:  # cedarpy raises plain exceptions for parse errors
        raise PolicyError(f"Cedar cannot parse the policies: {_where_parse_fails(texts)}{exc}") from exc
    static = parsed.get("staticPolicies", {})
    annotations = {pid: p.get("annotations", {}) for pid, p in static.items()}
    names = {pid: a.get("id", pid) for pid, a in annotations.items()}
    permits = tuple((names[pid], _action_scope([p])) for pid, p in static.items() if p.get("effect") == "permit")
    return _Set(text, handle, names, annotations, _action_scope(static.values()), permits, tuple(texts))


def _action_scope(policies: Any) -> frozenset[str] | None:
    """The action UIDs the policies are scoped to, or None if any policy may match any action."""
    actions: set[str] = set()
    for p in policies:
        scope = p.get("action", {})
        op = scope.get("op")
        if op == "==" and "entity" in scope:
            entities = [scope["entity"]]
        elif op == "in" and "entities" in scope:
            entities = scope["entities"]
        else:
            return None  # "All", "in" a group, or anything else: no cheap bound
        if not entities or any(e.get("type") != "Action" for e in entities):
            return None
        actions.update(f"Action::{json.dumps(e['id'])}" for e in entities)
    return frozenset(actions)


@dataclass
class PolicyBundle:
    """A loaded, parsed bundle; evaluation reuses the parsed policy set, schema and entities."""

    root: Path
    files: dict[str, bytes]
    schema_text: str
    entities_text: str
    bundle_shadow: bool
    enforced: _Set = field(repr=False)
    shadow_set: _Set = field(repr=False)
    schema: Any = field(repr=False)
    entities: Any = field(repr=False)
    #: policy name -> "file:line" where the policy (its first annotation) begins.
    locations: dict[str, str] = field(default_factory=dict, repr=False)
    #: the UIDs (``Type::"id"``) of every entity in entities.json.
    entity_uids: frozenset[str] = field(default_factory=frozenset, repr=False)

    @property
    def digest(self) -> str:
        return bundle_digest(self.files)

    def manifest(self) -> dict[str, str]:
        return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(self.files.items())}

    def policy_names(self) -> list[str]:
        """Every policy of the bundle, enforced and shadow."""
        return sorted(set(self.enforced.names.values()) | set(self.shadow_set.names.values()))

    def where(self, name: str) -> str:
        """``name (file:line)`` for a policy of this bundle, or just ``name`` when its place is unknown."""
        place = self.locations.get(name)
        return f"{name} ({place})" if place else name

    def permits_for(self, action: str) -> list[str]:
        """The enforced permit policies whose scope may include ``action`` (an action UID)."""
        return [name for name, actions in self.enforced.permits if actions is None or action in actions]

    def knows(self, uid: str) -> bool:
        """Whether entities.json holds the entity ``uid`` (``Type::"id"``)."""
        return uid in self.entity_uids

    def validate(self) -> list[str]:
        """Validate every policy against the schema; returns the errors (empty when valid)."""
        errors = []
        # The shadow set, when there is one, holds every policy; validate each policy once.
        for s in (self.shadow_set,) if self.shadow_set.text.strip() else (self.enforced,):
            if not s.text.strip():
                continue
            try:
                result = cedarpy.validate_policies(s.text, self.schema_text)
            except Exception as exc:
                return [f"the schema or policies cannot be parsed: {exc}"]
            for e in result.errors:
                where = s.locate(e.policy_id)
                name = s.names.get(e.policy_id, e.policy_id)
                errors.append(f"{name}: {where}: {e.error}" if where else f"{name}: {e.error}")
        return errors

    def evaluate(self, principal: str, action: str, resource: str, context: dict[str, Any]) -> Evaluation:
        """Evaluate one request. Deny by default; forbid wins; shadow policies are reported only."""
        result = self.evaluate_many([(principal, action, resource, context)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def evaluate_many(
        self, requests: Sequence[tuple[str, str, str, dict[str, Any]]]
    ) -> list[Evaluation | PolicyError | MalformedError]:
        """Evaluate (principal, action, resource, context) requests in one Cedar batch.

        Each request is decided on its own, exactly as :meth:`evaluate` would, with one
        Cedar call per policy set for the whole batch. A request that cannot be evaluated
        gets its error in its place; the others are unaffected.
        """
        out: list[Evaluation | PolicyError | MalformedError | None] = [None] * len(requests)
        built: list[tuple[int, dict[str, Any], str]] = []
        for i, (principal, action, resource, context) in enumerate(requests):
            try:
                action_id = action_uid(action)
                request = {
                    "principal": cedar_request_uid(entity_uid(principal, "principal")),
                    "action": cedar_request_uid(action_id),
                    "resource": cedar_request_uid(entity_uid(resource, "resource")),
                    # Checked against Cedar's types, handed over as JSON text (Cedar parses it anyway).
                    "context": compact(cedar_value(context)).decode("utf-8"),
                }
            except MalformedError as exc:
                out[i] = exc
                continue
            built.append((i, request, action_id))
        enforced = self._run_many(self.enforced, [r for _, r, _ in built])
        shadowed = [
            k
            for k, (_, _, action_id) in enumerate(built)
            if self.shadow_set.handle is not None and self.shadow_set.may_apply(action_id)
        ]
        shadow_runs = dict(zip(shadowed, self._run_many(self.shadow_set, [built[k][1] for k in shadowed]), strict=True))
        for k, (i, _, _) in enumerate(built):
            decided = enforced[k]
            if isinstance(decided, PolicyError):
                out[i] = decided
                continue
            shadow = []
            run = shadow_runs.get(k)
            if isinstance(run, PolicyError):
                out[i] = run
                continue
            if run is not None:
                shadow.append(("with-shadow-policies", run[0], run[1]))
            if self.bundle_shadow:
                # The whole bundle is in shadow mode: report what it would decide, enforce nothing.
                shadow.append(("bundle", decided[0], decided[1]))
                out[i] = Evaluation("deny", (), ("the policy bundle is in shadow mode",), Obligations(), tuple(shadow))
                continue
            decision, determining, errors = decided
            try:
                obligations = self._obligations(determining) if decision == "allow" else Obligations()
            except PolicyError as exc:
                out[i] = exc
                continue
            out[i] = Evaluation(decision, determining, errors, obligations, tuple(shadow))
        return [r if r is not None else PolicyError("the request was not evaluated") for r in out]

    def permissible(self, principal: str, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (action, resource): could some context make this principal's request Allow?

        See the module docstring for the definition. The principal and each resource are
        looked up as a real evaluation looks them up: one that entities.json does not hold is
        an entity without attributes or parents (Cedar's partial evaluation would otherwise
        treat it as *unknown*, and list what no real request is permitted). A malformed
        name raises :class:`MalformedError`; the answers are in the order of ``pairs``.
        Cedar ships partial evaluation as an experimental feature; a residual is only read
        for whether a permit remains, never taken as a decision.
        """
        principal_id = entity_uid(principal, "principal")
        built = [(action_uid(a), entity_uid(r, "resource")) for a, r in pairs]
        if self.bundle_shadow or self.enforced.handle is None:
            return [False] * len(built)  # evaluation enforces no policy: every request is denied
        entities = self.entities
        absent = sorted({principal_id, *(r for _, r in built)} - self.entity_uids)
        bare = [e for uid in absent if (e := _bare_entity(uid))]
        if bare:
            # Should Cedar refuse one, all are left unknown: partial evaluation then lists more, never less.
            with contextlib.suppress(ValueError):
                entities = entities.with_added_json_str(json.dumps(bare))
        answers: dict[tuple[str, str], bool] = {}  # one partial evaluation per distinct pair
        for a, r in built:
            if (a, r) not in answers:
                answers[a, r] = self._may_allow(principal_id, a, r, entities)
        return [answers[pair] for pair in built]

    def _may_allow(self, principal: str, action: str, resource: str, entities: Any) -> bool:
        if not self.enforced.may_apply(action):
            return False  # no enforced policy is scoped to this action: denied by default
        # No "context" key: Cedar's partial evaluation treats the context as unknown. (It takes
        # the UIDs in their string form only.)
        request = {"principal": principal, "action": action, "resource": resource}
        try:
            result = cedarpy.is_authorized_partial(request, self.enforced.handle, entities, self.schema)
        except Exception as exc:
            raise PolicyError(f"Cedar could not partially evaluate the request: {exc}") from exc
        if result.decision == cedarpy.Decision.Allow:
            return True
        if result.decision == cedarpy.Decision.Deny:
            return False  # a forbid definitely applies, or no permit can
        # No decision: a permit must remain that may still apply. No residuals at all means
        # Cedar refused the request itself (e.g. an action the schema does not declare), and
        # the real evaluation of it fails: a deny.
        residuals = result.residuals
        live = set(result.diagnostics.may_be_determining) | set(result.diagnostics.reasons)
        return any(residuals.get(pid, {}).get("effect") == "permit" for pid in live)

    def _run_many(
        self, s: _Set, requests: list[dict[str, Any]]
    ) -> list[tuple[str, tuple[str, ...], tuple[str, ...]] | PolicyError]:
        if not requests:
            return []
        if s.handle is None:
            return [("deny", (), ("no policies",)) for _ in requests]
        try:
            results = cedarpy.is_authorized_batch(requests, s.handle, self.entities, self.schema)
        except Exception as exc:
            if len(requests) > 1:  # find the one Cedar refuses; decide the others
                return [self._run_many(s, [r])[0] for r in requests]
            return [PolicyError(f"Cedar could not evaluate the request: {exc}")]
        out: list[tuple[str, tuple[str, ...], tuple[str, ...]] | PolicyError] = []
        for result in results:
            determining = tuple(sorted(s.names.get(p, p) for p in result.diagnostics.reasons))
            errors = tuple(str(e) for e in result.diagnostics.errors)
            out.append(("allow" if result.allowed else "deny", determining, errors))
        return out

    def _obligations(self, determining: tuple[str, ...]) -> Obligations:
        by_name = {self.enforced.names[p]: a for p, a in self.enforced.annotations.items()}
        ttl, max_duration, heartbeat, approval, single = DEFAULT_TTL, None, None, None, False
        for name in determining:
            a = by_name.get(name, {})
            if "ttl" in a:
                ttl = min(ttl, _int_annotation(a["ttl"], "ttl", name, 1, MAX_TTL))
            if "max_duration" in a:
                v = _int_annotation(a["max_duration"], "max_duration", name, 1, 7 * 86400)
                max_duration = v if max_duration is None else min(max_duration, v)
            if "heartbeat_ms" in a:
                v = _int_annotation(a["heartbeat_ms"], "heartbeat_ms", name, 10, 60_000)
                heartbeat = v if heartbeat is None else min(heartbeat, v)
            if "approval" in a:
                approval = a["approval"] or "default"
            if "single_use" in a:
                single = True
        return Obligations(ttl, max_duration, heartbeat, approval, single)


def bundle_digest(files: dict[str, bytes]) -> str:
    """SHA-256 over the RFC 8785 form of ``{file name: sha256 hex}`` — the bundle's identity."""
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    return hashlib.sha256(canonicalize(manifest)).hexdigest()


def read_bundle_files(root: Path) -> dict[str, bytes]:
    if not root.is_dir():
        raise PolicyError(f"{root} is not a directory of .cedar files")
    files: dict[str, bytes] = {}
    for path in sorted(root.iterdir()):
        if path.is_file() and (
            path.suffix == ".cedar" or path.name in (*SCHEMA_NAMES, "entities.json", "fiat-policy.toml", "tests.json")
        ):
            if path.stat().st_size > MAX_FILE:
                raise PolicyError(f"{path} is larger than {MAX_FILE:,} bytes")
            files[path.name] = path.read_bytes()
    return files


def load_bundle(root: Path | None = None, files: dict[str, bytes] | None = None) -> PolicyBundle:
    """Load a bundle from a directory or from file contents (a published version)."""
    if files is None:
        if root is None:
            raise ValueError("a bundle needs a directory or its files")
        files = read_bundle_files(root)
    root = root or Path("<published>")
    cedar = [(n, d) for n, d in sorted(files.items()) if n.endswith(".cedar")]
    if not cedar:
        raise PolicyError(f"{root} holds no .cedar files")
    schema_name = next((n for n in SCHEMA_NAMES if n in files), None)
    if schema_name is None:
        raise PolicyError(f"{root} has no schema ({' or '.join(SCHEMA_NAMES)}); Fiat validates every bundle")
    try:
        schema_text = files[schema_name].decode("utf-8")
        entities_text = files.get("entities.json", b"[]").decode("utf-8")
        texts = [(n, d.decode("utf-8")) for n, d in cedar]
    except UnicodeDecodeError as exc:
        raise PolicyError(f"a policy bundle file is not UTF-8: {exc}") from exc
    bundle_shadow = False
    if "fiat-policy.toml" in files:
        try:
            settings = tomllib.loads(files["fiat-policy.toml"].decode("utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise PolicyError(f"fiat-policy.toml is not valid TOML: {exc}") from exc
        bundle_shadow = bool(settings.get("shadow", False))
    try:
        schema = (
            cedarpy.Schema.from_str(schema_text)
            if schema_name.endswith(".cedarschema")
            else cedarpy.Schema.from_json_str(schema_text)
        )
    except Exception as exc:
        raise PolicyError(f"the schema does not parse: {exc}") from exc
    try:
        entities = cedarpy.Entities.from_json_str(entities_text, schema=schema)
    except Exception as exc:
        raise PolicyError(f"entities.json does not parse against the schema: {exc}") from exc
    # Split @shadow policies from enforced ones: evaluate the file set once to find them.
    everything = _make_set(texts)
    shadow_ids = {pid for pid, a in everything.annotations.items() if "shadow" in a}
    if shadow_ids:
        # Enforced: every policy but the @shadow ones. Shadow: all of them, i.e. the decision
        # the bundle would make if the shadow policies were enforced too.
        enforced, shadow = _make_set([("enforced", _without(everything.text, shadow_ids))]), everything
        # Shadow results can only differ from enforced ones for actions a shadow policy names.
        static = json.loads(cedarpy.policies_to_json_str(everything.text)).get("staticPolicies", {})
        shadow.actions = _action_scope([p for pid, p in static.items() if pid in shadow_ids])
    else:
        enforced, shadow = everything, _make_set([])
    return PolicyBundle(
        root,
        files,
        schema_text,
        entities_text,
        bundle_shadow,
        enforced,
        shadow,
        schema,
        entities,
        _locations(texts, everything, renumbered=bool(shadow_ids)),
        _entity_uids(entities_text),
    )


def _policy_lines(text: str) -> list[int]:
    """The line (1-based) where each policy of a Cedar file begins, in order.

    Every Cedar policy ends with ``;`` and no ``;`` occurs inside one outside a string
    literal or a comment (Cedar grammar: ``Policy ::= {Annotation} Effect '(' Scope ')'
    {Conditions} ';'``), so a scan that skips strings and ``//`` comments finds them.
    """
    starts: list[int] = []
    line, i, n = 1, 0, len(text)
    begun = False
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "/" and text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif c == '"':
            if not begun:
                starts.append(line)
                begun = True
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\n":
                    line += 1
                i += 2 if text[i] == "\\" else 1
        elif c == ";":
            begun = False
        elif not c.isspace() and not begun:
            starts.append(line)
            begun = True
        i += 1
    return starts


def _locations(texts: list[tuple[str, str]], everything: _Set, *, renumbered: bool) -> dict[str, str]:
    """Policy name -> ``file:line``; Cedar numbers the policies ``policy0``, ... in text order.

    When the enforced set was rebuilt without the shadow policies (``renumbered``), Cedar's
    own ids differ between the sets, so only names given with ``@id`` are located.
    """
    places: list[str] = []
    for file, text in texts:
        places.extend(f"{file}:{line}" for line in _policy_lines(text))
    if len(places) != len(everything.names):
        return {}  # the scan disagrees with Cedar: name no place rather than a wrong one
    out: dict[str, str] = {}
    for k, place in enumerate(places):
        pid = f"policy{k}"
        name = everything.names.get(pid)
        if name is not None and (not renumbered or "id" in everything.annotations.get(pid, {})):
            out[name] = place
    return out


def _entity_uids(entities_text: str) -> frozenset[str]:
    """The ``Type::"id"`` of every entity in Cedar's entity JSON (already parsed by Cedar)."""
    try:
        entities = json.loads(entities_text)
    except ValueError:
        return frozenset()
    uids = set()
    for e in entities if isinstance(entities, list) else ():
        uid = e.get("uid") if isinstance(e, dict) else None
        if isinstance(uid, dict) and isinstance(uid.get("type"), str) and isinstance(uid.get("id"), str):
            uids.add(f"{uid['type']}::{json.dumps(uid['id'], ensure_ascii=False)}")
    return frozenset(uids)


def _bare_entity(uid: str) -> dict[str, Any] | None:
    """Cedar entity JSON for ``uid`` (``Type::"id"``) without attributes or parents: what a real
    evaluation takes an entity entities.json does not hold to be. None for an id spelled with
    escapes JSON does not share with Cedar (the entity is then left unknown)."""
    kind, sep, rest = uid.partition('::"')  # a type holds no '"': the first '::"' ends it
    try:
        ident = json.loads('"' + rest) if sep else None
    except ValueError:
        return None
    return {"uid": {"type": kind, "id": ident}, "attrs": {}, "parents": []} if isinstance(ident, str) else None


def _without(text: str, drop: set[str]) -> str:
    """The policy text without the policies ``drop`` names, via Cedar's own JSON form."""
    parsed = json.loads(cedarpy.policies_to_json_str(text))
    kept = {k: v for k, v in parsed.get("staticPolicies", {}).items() if k not in drop}
    return cedarpy.policies_from_json_str(json.dumps({**parsed, "staticPolicies": kept})) if kept else ""


# -- policy tests (`fiat policy test`) ---------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    name: str
    expected: str
    got: str
    determining: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return self.expected == self.got


def run_cases(bundle: PolicyBundle, cases: Any) -> list[CaseResult]:
    """Cases: ``[{"name", "principal", "action", "resource", "context", "expect": "allow"|"deny"}]``."""
    if not isinstance(cases, list):
        raise PolicyError("tests.json must be a list of cases")
    results = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or case.get("expect") not in ("allow", "deny"):
            raise PolicyError(f"case {i} needs principal, action, resource and expect: allow|deny")
        name = str(case.get("name", f"case {i}"))
        try:
            ev = bundle.evaluate(case["principal"], case["action"], case["resource"], case.get("context", {}))
            got, det, errs = ev.decision, ev.determining, ev.errors
        except (MalformedError, PolicyError, KeyError) as exc:
            got, det, errs = "deny", (), (str(exc),)
        results.append(CaseResult(name, case["expect"], got, det, errs))
    return results
