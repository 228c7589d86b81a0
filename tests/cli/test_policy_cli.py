"""``fiat policy validate | test | publish | history | diff`` through the real command line.

Every command runs as a child process (``python -m fiat.cli.main``) on copies of
``examples/policies``: valid, with a policy naming an undeclared attribute or entity
type, with a Cedar syntax error, without a schema. Publishing twice (with a change in
between) must give versions 1 and 2, a history with digests and log indexes, a unified
diff, and a signed policy statement (DSSE, in-toto, ``policy/v1``) in the log at each
index, whose version and file digests match what was published.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from fiat.authorize.policy import bundle_digest, read_bundle_files
from support import EXAMPLES, copy_bundle, edit
from support.processes import EXIT_ERROR, EXIT_FAILED, EXIT_INVALID, EXIT_OK, show
from support.processes import fiat_text as fiat

POLICY_PREDICATE = "https://fiat.local/predicate/policy/v1"
HEX64 = re.compile(r"[0-9a-f]{64}")


def cases() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((EXAMPLES / "tests.json").read_text(encoding="utf-8"))
    return data


# -- validate ------------------------------------------------------------------------------


def test_validate_the_examples() -> None:
    p = fiat("policy", "validate", EXAMPLES)
    assert p.returncode == EXIT_OK, show(p)
    digest = bundle_digest(read_bundle_files(EXAMPLES))
    assert f"policies valid against the schema; digest {digest}" in p.stdout, show(p)
    assert p.stderr == ""


def test_validate_refuses_an_undeclared_attribute(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    # Only the first policy of deploy.cedar (platform-deploys) reads the undeclared attribute.
    edit(bundle / "deploy.cedar", "context.input.replicas <= 20 };", "context.input.replicaz <= 20 };")
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_FAILED, show(p)
    errors = [line for line in p.stderr.splitlines() if line.startswith("✗")]
    assert errors, show(p)
    assert all(line.startswith("✗ platform-deploys:") for line in errors), show(p)
    assert "replicaz" in p.stderr
    assert "critical-needs-approval" not in p.stderr  # untouched policies are not blamed
    assert f"validation error(s) in {bundle}" in p.stderr
    assert "policies valid" not in p.stdout


def test_validate_refuses_an_undeclared_entity_type(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    edit(bundle / "shell.cedar", 'resource == Repo::"fiat"', 'resource == Widget::"fiat"')
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_FAILED, show(p)
    errors = [line for line in p.stderr.splitlines() if line.startswith("✗")]
    assert errors and all(line.startswith("✗ bot-shell-in-repo:") for line in errors), show(p)
    assert "Widget" in p.stderr


def test_validate_refuses_an_undeclared_action(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    edit(
        bundle / "refunds.cedar",
        'action == Action::"tool:refund", resource)\nwhen { context.input.amount_cents',
        'action == Action::"tool:launch", resource)\nwhen { context.input.amount_cents',
    )
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_FAILED, show(p)
    assert "small-refunds" in p.stderr, show(p)


def test_validate_reports_each_error_once(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    edit(bundle / "shell.cedar", 'resource == Repo::"fiat"', 'resource == Widget::"fiat"')
    p = fiat("policy", "validate", bundle)
    # The same error, whatever internal id ("policy4", "policy5") Cedar gave the policy in each set.
    errors = [re.sub(r"`policy\d+`", "`policyN`", line) for line in p.stderr.splitlines() if line.startswith("✗")]
    assert errors and len(errors) == len(set(errors)), show(p)
    assert f"{len(errors)} validation error(s)" in p.stderr


def test_validate_a_syntax_error_is_invalid_input(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    with (bundle / "shell.cedar").open("a", encoding="utf-8") as f:
        f.write('\n@id("half-written")\npermit (principal, action, resource\n')
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_INVALID, show(p)
    assert "Cedar cannot parse the policies" in p.stderr, show(p)
    assert "unexpected" in p.stderr  # Cedar's own parse error is shown


def test_validate_without_a_schema_is_invalid_input(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    (bundle / "schema.cedarschema").unlink()
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_INVALID, show(p)
    assert "has no schema" in p.stderr and "schema.cedarschema" in p.stderr, show(p)


def test_validate_a_broken_schema_or_missing_directory_is_invalid_input(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    with (bundle / "schema.cedarschema").open("a", encoding="utf-8") as f:
        f.write("\nentity Broken {\n")
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_INVALID, show(p)
    assert "the schema does not parse" in p.stderr
    p = fiat("policy", "validate", tmp_path / "no-such-bundle")
    assert p.returncode == EXIT_INVALID, show(p)
    assert "is not a directory" in p.stderr


# -- test ------------------------------------------------------------------------------------


def test_test_the_examples() -> None:
    n = len(cases())
    assert n == 14  # seven for deploy, shell, refunds and delegation; seven for the MCP gateway (mcp.cedar)
    p = fiat("policy", "test", EXAMPLES)
    assert p.returncode == EXIT_OK, show(p)
    assert p.stdout.rstrip().splitlines()[-1] == f"{n} passed, 0 failed", show(p)
    assert p.stdout.count("✓") == n
    for case in cases():
        assert f"✓ {case['name']}: {case['expect']}" in p.stdout


def test_test_a_wrong_expectation_shows_the_diff(tmp_path: Path) -> None:
    wrong = cases()
    # "unverified environment" is denied by default; "forbid wins over permit" is denied by replica-ceiling.
    names = {c["name"]: i for i, c in enumerate(wrong)}
    assert wrong[names["unverified environment"]]["expect"] == "deny"
    assert wrong[names["forbid wins over permit"]]["expect"] == "deny"
    wrong[names["unverified environment"]]["expect"] = "allow"
    wrong[names["forbid wins over permit"]]["expect"] = "allow"
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(wrong), encoding="utf-8")
    p = fiat("policy", "test", EXAMPLES, "--cases", path)
    assert p.returncode == EXIT_FAILED, show(p)
    lines = [line.strip() for line in p.stdout.splitlines()]
    i = lines.index("✗ forbid wins over permit")
    assert lines[i + 1] == "- expected: allow"
    assert lines[i + 2] == "+ got:      deny (determining: replica-ceiling)"
    j = lines.index("✗ unverified environment")
    assert lines[j + 1] == "- expected: allow"
    assert lines[j + 2] == "+ got:      deny (determining: none)"
    assert lines[-1] == f"{len(wrong) - 2} passed, 2 failed"
    assert "✓ bot deploys docs: allow" in lines


def test_test_json_output(tmp_path: Path) -> None:
    p = fiat("policy", "test", EXAMPLES, "--json")
    assert p.returncode == EXIT_OK, show(p)
    doc = json.loads(p.stdout)
    assert doc["passed"] == len(cases()) and doc["failed"] == 0
    by_name = {c["name"]: c for c in doc["cases"]}
    assert set(by_name) == {c["name"] for c in cases()}
    assert by_name["bot deploys docs"] == {
        "name": "bot deploys docs",
        "expected": "allow",
        "got": "allow",
        "determining": ["platform-deploys"],
    }
    assert by_name["forbid wins over permit"]["determining"] == ["replica-ceiling"]
    # A failing run is still JSON, and still exits 1.
    wrong = cases()
    wrong[0]["expect"] = "deny"
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(wrong), encoding="utf-8")
    p = fiat("policy", "test", EXAMPLES, "--cases", path, "--json")
    assert p.returncode == EXIT_FAILED, show(p)
    doc = json.loads(p.stdout)
    assert doc["failed"] == 1 and doc["passed"] == len(wrong) - 1
    first = next(c for c in doc["cases"] if c["name"] == wrong[0]["name"])
    assert first["expected"] == "deny" and first["got"] == "allow"


@pytest.mark.parametrize(
    "content",
    ["{", '{"not": "a list"}', '[{"name": "no expectation"}]', '[{"expect": "maybe"}]', "[1]"],
)
def test_test_a_malformed_cases_file_is_invalid_input(tmp_path: Path, content: str) -> None:
    path = tmp_path / "cases.json"
    path.write_text(content, encoding="utf-8")
    p = fiat("policy", "test", EXAMPLES, "--cases", path)
    assert p.returncode == EXIT_INVALID, show(p)
    assert f"cannot run the cases in {path}" in p.stderr


def test_test_a_missing_cases_file_is_invalid_input(tmp_path: Path) -> None:
    p = fiat("policy", "test", EXAMPLES, "--cases", tmp_path / "absent.json")
    assert p.returncode == EXIT_INVALID, show(p)
    assert "cannot run the cases" in p.stderr


# -- publish, history, diff, and the log ------------------------------------------------------------


def history(home: Path) -> list[dict[str, Any]]:
    p = fiat("policy", "history", "--home", home, "--json")
    assert p.returncode == EXIT_OK, show(p)
    rows: list[dict[str, Any]] = json.loads(p.stdout)
    return rows


def log_size(home: Path) -> int:
    p = fiat("log", "checkpoint", "--home", home)
    assert p.returncode == EXIT_OK, show(p)
    return int(p.stdout.split("\n")[1])


def policy_statement(home: Path, index: int) -> tuple[Any, Any]:
    """The log entry at ``index`` as (DSSE envelope, in-toto statement)."""
    from fiat.config import load_config
    from fiat.formats.dsse import Envelope
    from fiat.formats.statement import Statement
    from fiat.wiring import open_log

    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("FIAT_"):
                mp.delenv(k)
        log = open_log(load_config(home, require=True))
        try:
            (entry,) = log.read_entries(index, index + 1)
        finally:
            log.close()
            log.store.close()
    envelope = Envelope.from_json(json.loads(entry))
    return envelope, Statement.from_envelope(envelope)


def authority_key(home: Path) -> tuple[str, bytes]:
    from fiat.config import load_config
    from fiat.home import keyring

    with pytest.MonkeyPatch.context() as mp:
        for k in list(os.environ):
            if k.startswith("FIAT_"):
                mp.delenv(k)
        (rec,) = [r for r in keyring(load_config(home, require=True)).records if r.role == "authority"]
    return rec.kid, rec.public_key


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home with versions 1 and 2 published: shell.cedar's @max_duration changed in between."""
    tmp = tmp_path_factory.mktemp("publish")
    home = tmp / "home"
    p = fiat("init", "--home", home)
    assert p.returncode == EXIT_OK, show(p)
    bundle = copy_bundle(tmp)
    v1_files = read_bundle_files(bundle)
    p = fiat("policy", "publish", bundle, "--home", home, "--json")
    assert p.returncode == EXIT_OK, show(p)
    first = json.loads(p.stdout)
    edit(bundle / "shell.cedar", '@max_duration("120")', '@max_duration("90")')
    v2_files = read_bundle_files(bundle)
    p = fiat("policy", "publish", bundle, "--home", home)
    assert p.returncode == EXIT_OK, show(p)
    m = re.fullmatch(
        r"published policy version (\d+) \(([0-9a-f]{64})\); policy statement at log index (\d+)\n", p.stdout
    )
    assert m, show(p)
    second = {"version": int(m[1]), "digest": m[2], "logIndex": int(m[3])}
    return {"home": home, "bundle": bundle, "results": [first, second], "files": [v1_files, v2_files], "tmp": tmp}


def test_publish_twice_gives_versions_1_and_2(published: dict[str, Any]) -> None:
    first, second = published["results"]
    v1_files, v2_files = published["files"]
    assert first["version"] == 1 and second["version"] == 2
    assert first["digest"] == bundle_digest(v1_files) and second["digest"] == bundle_digest(v2_files)
    assert first["digest"] != second["digest"]
    assert isinstance(first["logIndex"], int) and second["logIndex"] > first["logIndex"]


def test_history_lists_both_versions(published: dict[str, Any]) -> None:
    rows = history(published["home"])
    assert [r["version"] for r in rows] == [1, 2]
    for row, result in zip(rows, published["results"], strict=True):
        assert row["digest"] == result["digest"] and HEX64.fullmatch(row["digest"])
        assert row["logIndex"] == result["logIndex"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["publishedAt"]), row
    p = fiat("policy", "history", "--home", published["home"])
    assert p.returncode == EXIT_OK, show(p)
    lines = p.stdout.splitlines()
    assert len(lines) == 2
    for line, row in zip(lines, rows, strict=True):
        assert (
            line.startswith(f"v{row['version']}  ")
            and row["digest"] in line
            and line.endswith(f"log #{row['logIndex']}")
        )


def test_diff_shows_the_changed_line(published: dict[str, Any]) -> None:
    p = fiat("policy", "diff", "1", "2", "--home", published["home"])
    assert p.returncode == EXIT_OK, show(p)
    lines = p.stdout.splitlines()
    assert "--- v1/shell.cedar" in lines and "+++ v2/shell.cedar" in lines
    assert '-@max_duration("120")' in lines
    assert '+@max_duration("90")' in lines
    assert any(line.startswith("@@ ") for line in lines)
    # Only the changed file appears.
    assert [line for line in lines if line.startswith("--- ")] == ["--- v1/shell.cedar"]
    # And in reverse.
    p = fiat("policy", "diff", "2", "1", "--home", published["home"])
    assert p.returncode == EXIT_OK and '+@max_duration("120")' in p.stdout.splitlines()
    # A version against itself: no difference.
    p = fiat("policy", "diff", "2", "2", "--home", published["home"])
    assert p.returncode == EXIT_OK and p.stdout == ""


@pytest.mark.parametrize(
    ("old", "new", "missing"), [("1", "9", "9"), ("9", "1", "9"), ("0", "2", "0"), ("-1", "2", "-1")]
)
def test_diff_with_an_unpublished_version_is_a_clear_error(
    published: dict[str, Any], old: str, new: str, missing: str
) -> None:
    p = fiat("policy", "diff", "--home", published["home"], "--", old, new)
    assert p.returncode == EXIT_INVALID, show(p)
    assert f"version {missing} was never published" in p.stderr, show(p)
    assert "fiat policy history" in p.stderr
    assert p.stdout == ""


def test_diff_arguments_must_be_numbers(published: dict[str, Any]) -> None:
    p = fiat("policy", "diff", "one", "2", "--home", published["home"])
    assert p.returncode == EXIT_INVALID, show(p)


def test_policy_statements_are_in_the_log(published: dict[str, Any]) -> None:
    from fiat.formats.statement import POLICY

    assert POLICY == POLICY_PREDICATE
    home = published["home"]
    kid, public = authority_key(home)
    for row, files in zip(history(home), published["files"], strict=True):
        envelope, statement = policy_statement(home, row["logIndex"])
        assert envelope.payload_type == "application/vnd.in-toto+json"
        assert envelope.verify_with(kid, public), "the policy statement is not signed by the authority key"
        assert statement.predicate_type == POLICY_PREDICATE
        assert statement.predicate["version"] == row["version"]
        assert statement.subject(f"policy-bundle:v{row['version']}") == row["digest"]
        assert statement.predicate["files"] == {
            name: {"sha256": hashlib.sha256(data).hexdigest()} for name, data in files.items()
        }
        assert set(statement.predicate["files"]) >= {"schema.cedarschema", "shell.cedar", "deploy.cedar"}
    # The two statements name different shell.cedar digests and the same everything else.
    (_, s1), (_, s2) = (policy_statement(home, r["logIndex"]) for r in history(home))
    changed = {n for n in s1.predicate["files"] if s1.predicate["files"][n] != s2.predicate["files"][n]}
    assert changed == {"shell.cedar"}


@pytest.mark.parametrize("breakage", ["undeclared attribute", "syntax error", "no schema", "no policies"])
def test_publishing_an_invalid_bundle_changes_nothing(published: dict[str, Any], breakage: str) -> None:
    home = published["home"]
    bundle = copy_bundle(published["tmp"], f"broken-{breakage.replace(' ', '-')}")
    if breakage == "undeclared attribute":
        edit(bundle / "deploy.cedar", "context.input.replicas <= 20 };", "context.input.replicaz <= 20 };")
    elif breakage == "syntax error":
        (bundle / "refunds.cedar").write_text("permit (principal, action, resource\n", encoding="utf-8")
    elif breakage == "no schema":
        (bundle / "schema.cedarschema").unlink()
    else:
        for f in bundle.glob("*.cedar"):
            f.unlink()
    before_rows, before_size = history(home), log_size(home)
    p = fiat("policy", "publish", bundle, "--home", home)
    assert p.returncode == EXIT_INVALID, show(p)
    assert "published policy version" not in p.stdout
    if breakage == "undeclared attribute":
        assert "does not validate" in p.stderr and "platform-deploys" in p.stderr, show(p)
    assert history(home) == before_rows
    assert [r["version"] for r in before_rows] == [1, 2]
    assert log_size(home) == before_size  # no statement was logged for it


def test_history_of_a_fresh_home_is_empty(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fiat("init", "--home", home).returncode == EXIT_OK
    assert history(home) == []
    p = fiat("policy", "diff", "1", "2", "--home", home)
    assert p.returncode == EXIT_INVALID and "version 1 was never published" in p.stderr
    p = fiat("policy", "history", "--home", tmp_path / "no-home")
    assert p.returncode == EXIT_ERROR and "no Fiat home" in p.stderr


def test_policies_are_located_by_file_and_line(tmp_path: Path) -> None:
    """Decisions name a policy as ``name (file:line)``; ``;`` in strings and comments does not confuse it."""
    from fiat.authorize.policy import load_bundle

    bundle = copy_bundle(tmp_path)
    (bundle / "extra.cedar").write_text(
        "// a comment; with a semicolon\n"
        '@id("semi;colon")\n'
        'permit (principal, action == Action::"deploy", resource)\n'
        'when { context.input.version == "1;2" };\n'
        "\n"
        'permit (principal, action == Action::"deploy", resource) when { false };\n',
        encoding="utf-8",
    )
    loaded = load_bundle(bundle)
    assert loaded.where("semi;colon") == "semi;colon (extra.cedar:2)"
    assert loaded.where("replica-ceiling") == "replica-ceiling (deploy.cedar:15)"
    assert loaded.where("bot-shell-in-repo") == "bot-shell-in-repo (shell.cedar:2)"  # numbered after extra.cedar
    # With @shadow policies split off, Cedar renumbers the enforced set: a policy without @id has no place.
    assert set(loaded.locations) == {n for n in loaded.policy_names() if not n.startswith("policy")}
    assert loaded.permits_for('Action::"deploy"')[:3] == ["platform-deploys", "critical-needs-approval", "semi;colon"]


# -- errors that name the file and line; publish runs the bundle's own tests --------------------


def _line_of(path: Path, needle: str) -> int:
    return next(n for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


def test_a_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    with (bundle / "refunds.cedar").open("a", encoding="utf-8") as f:
        f.write('\n@id("half-written")\npermit (principal, action, resource\n')
    line = _line_of(bundle / "refunds.cedar", "half-written")
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_INVALID, show(p)
    assert f"refunds.cedar:{line}:" in p.stderr, show(p)
    bundle2 = copy_bundle(tmp_path, "bundle2")
    edit(bundle2 / "shell.cedar", 'resource == Repo::"fiat"', 'resource == Repo::"fiat" &&')
    p = fiat("policy", "validate", bundle2)
    assert p.returncode == EXIT_INVALID, show(p)
    assert "shell.cedar:" in p.stderr and "deploy.cedar" not in p.stderr, show(p)


def test_a_validation_error_names_the_file_and_line_of_the_policy(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path)
    edit(bundle / "shell.cedar", 'resource == Repo::"fiat"', 'resource == Widget::"fiat"')
    line = _line_of(bundle / "shell.cedar", '@id("bot-shell-in-repo")')
    p = fiat("policy", "validate", bundle)
    assert p.returncode == EXIT_FAILED, show(p)
    errors = [e for e in p.stderr.splitlines() if e.startswith("✗")]
    assert errors and all(e.startswith(f"✗ bot-shell-in-repo: shell.cedar:{line}: ") for e in errors), show(p)


def test_publish_refuses_a_bundle_whose_own_tests_fail(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert fiat("init", "--home", home).returncode == EXIT_OK
    bundle = copy_bundle(tmp_path, "failing-tests")
    # Valid Cedar, but the bundle's own tests.json expects the bot to deploy docs.
    edit(bundle / "deploy.cedar", "context.input.replicas <= 20 };", "context.input.replicas <= 2 };")
    before_rows, before_size = history(home), log_size(home)
    p = fiat("policy", "publish", bundle, "--home", home)
    assert p.returncode == EXIT_FAILED, show(p)
    assert "bot deploys docs" in p.stderr and "not published" in p.stderr and "--skip-tests" in p.stderr, show(p)
    assert p.stdout == ""
    assert history(home) == before_rows and log_size(home) == before_size
    p = fiat("policy", "publish", bundle, "--home", home, "--skip-tests", "--json")
    assert p.returncode == EXIT_OK, show(p)
    assert json.loads(p.stdout)["version"] == len(before_rows) + 1
