"""The proof viewer (``/ui/verify``) agrees with ``fiat verify`` on the whole tamper corpus.

The in-browser verifier (``fiat/api/ui/verifier/*.js``, WebCrypto Ed25519 in real Chromium) is
given every case of ``tests/verify/test_verify_tamper.py`` (the registry ``CASES`` and its
``world`` of real executions in real homes) and must reach the same verdict as the Python
verifier, the code ``fiat verify --json`` runs: the same steps with the same statuses, hence the
same first failing step, or the same refusal as malformed (``bundle-format`` / ``trust-root``).
A sample goes through the real CLI as a subprocess as well. Hostile inputs (duplicate member
names, truncations, NaN, huge numbers, lone surrogates, deep nesting, a BOM) are refused alike.

The page itself is driven like a user would: a trust root and a bundle uploaded through its
file inputs, every step shown; while it verifies, the page makes no request at all.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import importlib.util
import itertools
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fiat.api.credentials import ensure_admin_token
from fiat.errors import MalformedError
from fiat.formats import jws as jwslib
from fiat.formats.dsse import sign_envelope
from fiat.formats.statement import DECISION, RECEIPT
from fiat.home import keyring
from fiat.verify import STEPS, Bundle, TrustRoot, verify
from support.evidence import Execution, make_execution
from support.processes import FiatServer, fiat

from .conftest import Watched


def _load_tamper_corpus() -> Any:
    """``tests/verify/test_verify_tamper.py`` by path (the suite imports test files in importlib
    mode, so it is no importable package), under a name of its own."""
    name = "fiat_tests_tamper_corpus"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[1] / "verify" / "test_verify_tamper.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


tamper = _load_tamper_corpus()
world = tamper.world  # the module-scoped fixture of real executions, reused here

Report = dict[str, Any]


def python_report(bundle: bytes, root: bytes) -> tuple[int, Report]:
    """What ``fiat verify BUNDLE --trust-root ROOT --json`` prints, and its exit status
    (:func:`fiat.cli.verify.verify_cmd`: the trust root is parsed first, then the bundle)."""
    try:
        parsed_root = TrustRoot.parse(root)
    except MalformedError as exc:
        return 2, {"verified": False, "failedStep": "trust-root", "error": str(exc)}
    try:
        parsed = Bundle.parse(bundle)
    except MalformedError as exc:
        return 2, {"verified": False, "failedStep": "bundle-format", "error": str(exc)}
    result = verify(parsed, parsed_root)
    return (0 if result.verified else 1), result.to_json()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


JS_BATCH = """async (cases) => {
  const dec = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const out = [];
  for (const [b, r] of cases) {
    const t0 = performance.now();
    const report = await window.fiatVerify(dec(b), dec(r));
    out.push({ report, ms: performance.now() - t0 });
  }
  return out;
}"""


def js_reports(page: Any, inputs: list[tuple[bytes, bytes]], batch: int = 16) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i in range(0, len(inputs), batch):
        out += page.evaluate(JS_BATCH, [[b64(b), b64(r)] for b, r in inputs[i : i + batch]])
    return out


def verdict(report: Report) -> tuple[Any, ...]:
    """What must agree: verdict, failed step, each step's status, what the receipt says, and the
    assurance level reached (``{"level", "witnessed", "witnesses", "quorum", "text"}``)."""
    steps = tuple((s["step"], s["status"]) for s in report.get("steps", ()))
    keys = ("verified", "failedStep", "permit", "containment", "outcome", "exitCode", "haltReason", "assurance")
    return (*(report.get(k) for k in keys), steps)


def exit_of(report: Report) -> int:
    return 0 if report["verified"] else 1 if "steps" in report else 2


@pytest.fixture(scope="module")
def corpus(world: Any) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for c in tamper.CASES:
        bundle, root = c.build(world)
        out[c.name] = (tamper._as_bytes(bundle), tamper._root_bytes(root))
    return out


@pytest.fixture
def viewer(ui_server: FiatServer, open_page: Callable[..., Watched]) -> Watched:
    w = open_page(ui_server.url, "/ui/verify")
    w.page.wait_for_selector("body[data-ready='true']")
    return w


# -- (1) agreement over the whole tamper corpus ---------------------------------------------------


def test_browser_and_cli_agree_on_the_whole_tamper_corpus(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched
) -> None:
    names = list(corpus)
    assert len(names) == len(tamper.CASES) >= 100
    py = {n: python_report(*corpus[n]) for n in names}
    js = dict(zip(names, js_reports(viewer.page, [corpus[n] for n in names]), strict=True))
    disagree = [
        f"{n}: python {verdict(py[n][1])[:2]} browser {verdict(js[n]['report'])[:2]}"
        for n in names
        if verdict(py[n][1]) != verdict(js[n]["report"]) or py[n][0] != exit_of(js[n]["report"])
    ]
    assert not disagree, "\n".join(disagree)
    # And each case is where the corpus says it is: valid ones pass in both, tampers fail at their step.
    for c in tamper.CASES:
        report = js[c.name]["report"]
        if c.step is None:
            assert report["verified"] is True, c.name
        elif c.step == "malformed":
            assert report["failedStep"] == "bundle-format" and report["error"].startswith("malformed "), c.name
        else:
            assert report["failedStep"] == c.step, (c.name, report)
            failed = next(s for s in report["steps"] if s["status"] == "fail")
            assert failed["step"] == c.step
            pyfailed = next(s for s in py[c.name][1]["steps"] if s["status"] == "fail")
            # Details are a port of the same sentences: the corpus' reason fragment is in both.
            if c.reason is not None:
                assert c.reason in pyfailed["detail"], (c.name, pyfailed)
    same_detail = sum(
        1
        for n in names
        if "steps" in py[n][1]
        and [s["detail"] for s in py[n][1]["steps"]] == [s["detail"] for s in js[n]["report"]["steps"]]
    )
    worded = [n for n in names if _wording(py[n][1]) != _wording(js[n]["report"])]
    print(f"\n{len(names)} cases agree; {same_detail} with every step's detail identical to the CLI's")
    # The port words its findings as the CLI does: every failing step's detail, every refusal.
    assert not worded, [(n, _wording(py[n][1]), _wording(js[n]["report"])) for n in worded[:5]]


def test_a_sample_through_the_real_cli_agrees_with_the_browser(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched, tmp_path: Path
) -> None:
    """One case of each of a few outcomes through ``python -m fiat.cli.main verify --json``."""
    picks: list[str] = []
    seen: set[str | None] = set()
    for c in tamper.CASES:
        if c.step not in seen and len(picks) < 6:
            picks.append(c.name)
            seen.add(c.step)
    js = js_reports(viewer.page, [corpus[n] for n in picks])
    for i, (name, got) in enumerate(zip(picks, js, strict=True)):
        b, r = tmp_path / f"{i}.bundle.json", tmp_path / f"{i}.root.json"
        b.write_bytes(corpus[name][0])
        r.write_bytes(corpus[name][1])
        proc = fiat("verify", b, "--trust-root", r, "--json")
        report = json.loads(proc.stdout)
        assert verdict(report) == verdict(got["report"]), name
        assert proc.returncode == exit_of(got["report"]), name


# -- (3) hostile inputs --------------------------------------------------------------------------------


def hostile_inputs(bundle: bytes, root: bytes) -> dict[str, tuple[bytes, bytes]]:
    """Derived from a real bundle and trust root (as tests/verify/test_verify_hostile.py does)."""
    text = bundle.decode("utf-8")
    out: dict[str, tuple[bytes, bytes]] = {}
    for k in (1, 10, 100, len(bundle) // 3, len(bundle) // 2, len(bundle) - 2, len(bundle) - 1):
        out[f"bundle truncated at {k}"] = (bundle[:k], root)
    for k in (1, len(root) // 2, len(root) - 2):
        out[f"trust root truncated at {k}"] = (bundle, root[:k])
    media = '"mediaType": "application/vnd.fiat.bundle.v1+json"'
    assert media in text
    out["duplicate member name"] = (text.replace(media, media + ", " + media, 1).encode(), root)
    out["duplicate by escape"] = (text.replace(media, media + ', "\\u006dediaType": 1', 1).encode(), root)
    out["duplicate in the trust root"] = (bundle, root.replace(b'"issuer"', b'"issuer": "x", "issuer"', 1))
    for token in ("NaN", "Infinity", "-Infinity", "1e400", "123456789012345678901234567890", "1.5", "-0"):
        out[f"number {token} in consistency"] = (
            text.replace('"consistency": []', f'"consistency": [{token}]').encode(),
            root,
        )
        out[f"number {token} in the context"] = (
            text.replace('"context": {', f'"context": {{"zz": {token}, ', 1).encode(),
            root,
        )
    out["lone surrogate in a tlog proof"] = (
        text.replace('"c2sp.org/tlog-proof@v1', '"\\ud800c2sp.org/tlog-proof@v1', 1).encode(),
        root,
    )
    out["lone surrogate in the context"] = (
        text.replace('"context": {', '"context": {"\\udc00": 1, ', 1).encode(),
        root,
    )
    out["deeply nested"] = (
        text.replace('"context": {', '"context": {"d": ' + "[" * 70 + "]" * 70 + ", ", 1).encode(),
        root,
    )
    out["nested just enough"] = (
        text.replace('"context": {', '"context": {"d": ' + "[" * 60 + "]" * 60 + ", ", 1).encode(),
        root,
    )
    out["byte order mark"] = (b"\xef\xbb\xbf" + bundle, root)
    out["invalid UTF-8"] = (bundle.replace(b"{", b"{\xff", 1), root)
    out["overlong UTF-8"] = (bundle.replace(b'"context": {', b'"context": {"\xc0\xaf": 1, ', 1), root)
    out["not JSON at all"] = (b"\x00\x01garbage", root)
    out["a JSON array"] = (b"[]", root)
    out["unknown member"] = (text.replace(media, media + ', "extra": 1', 1).encode(), root)
    out["trust root of another type"] = (bundle, root.replace(b"trust-root.v1", b"trust-root.v2", 1))
    out["trailing garbage"] = (bundle + b" x", root)
    out["control character in a string"] = (text.replace('"context": {', '"context": {"a\tb": 1, ', 1).encode(), root)
    return out


def test_hostile_inputs_are_refused_alike(corpus: dict[str, tuple[bytes, bytes]], viewer: Watched) -> None:
    cases = hostile_inputs(*corpus["valid/root-execution"])
    assert all(v != corpus["valid/root-execution"] for v in cases.values())  # each one changed something
    names = list(cases)
    js = js_reports(viewer.page, [cases[n] for n in names])
    disagree = []
    for name, got in zip(names, js, strict=True):
        code, want = python_report(*cases[name])
        if verdict(want) != verdict(got["report"]) or code != exit_of(got["report"]):
            disagree.append(f"{name}: python {verdict(want)[:2]} browser {verdict(got['report'])[:2]}")
        elif _wording(want) != _wording(got["report"]):
            disagree.append(f"{name!a}: worded {_wording(want)!a} vs {_wording(got['report'])!a}")
        assert got["ms"] < 1000, name  # each refusal is quick
    assert not disagree, "\n".join(disagree)


# -- (2) the page, as a user drives it ------------------------------------------------------------


def steps_shown(page: Any) -> list[tuple[str, str]]:
    rows = page.locator("#steps tbody tr").all()
    return [(r.get_attribute("data-step") or "", r.get_attribute("data-status") or "") for r in rows]


def test_the_page_verifies_an_uploaded_bundle_with_no_request(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched, tmp_path: Path
) -> None:
    page = viewer.page
    bundle, root = corpus["valid/with-approval"]
    (tmp_path / "trust-root.json").write_bytes(root)
    (tmp_path / "run.bundle.json").write_bytes(bundle)
    page.set_input_files("#root-file", str(tmp_path / "trust-root.json"))
    page.wait_for_selector("#root-fp")
    assert page.text_content("#root-fp") == "sha256:" + hashlib.sha256(root).hexdigest()
    before = len(viewer.requests)
    page.set_input_files("#bundle-file", str(tmp_path / "run.bundle.json"))
    page.wait_for_selector("body[data-verify-done='1']")
    assert viewer.requests[before:] == [], "verification made a network request"
    assert steps_shown(page) == [(s, "pass") for s in STEPS]
    assert page.get_attribute("#verdict", "data-verified") == "true"
    assert "Verified" in (page.text_content("#verdict") or "")
    assert "ms" in (page.text_content("#timing") or "")

    # A tampered bundle shows the step that failed, and the ones after it as skipped.
    bad, bad_root = corpus["removed/receipt"]
    assert bad_root == root
    (tmp_path / "bad.bundle.json").write_bytes(bad)
    page.set_input_files("#bundle-file", str(tmp_path / "bad.bundle.json"))
    page.wait_for_selector("body[data-verify-done='2']")
    assert viewer.requests[before:] == []
    shown = steps_shown(page)
    at = STEPS.index("receipt")
    assert shown[at] == ("receipt", "fail")
    assert all(st == "pass" for _, st in shown[:at]) and all(st == "skip" for _, st in shown[at + 1 :])
    assert page.get_attribute("#verdict", "data-failed-step") == "receipt"

    # The pinned root is remembered: a reload shows the same fingerprint.
    page.reload()
    page.wait_for_selector("#root-fp")
    assert page.text_content("#root-fp") == "sha256:" + hashlib.sha256(root).hexdigest()


TWO_OF_THREE = "Assurance: witnessed by 2 of 3 (the trust root requires 2)"


def test_the_page_shows_the_assurance_level(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched, tmp_path: Path
) -> None:
    """Witnessed by 2 of 3 with a quorum of 2; signed by the log with none: worded as the CLI words them."""
    page = viewer.page
    for i, (name, level, text) in enumerate(
        (
            ("valid/cosigned-by-two-of-three", "witnessed", TWO_OF_THREE),
            ("valid/signed-by-the-log-only", "log", "Assurance: signed by the log"),
        ),
        start=1,
    ):
        bundle, root = corpus[name]
        (tmp_path / f"{i}.root.json").write_bytes(root)
        (tmp_path / f"{i}.bundle.json").write_bytes(bundle)
        page.set_input_files("#root-file", str(tmp_path / f"{i}.root.json"))
        page.wait_for_selector("#root-fp")
        page.set_input_files("#bundle-file", str(tmp_path / f"{i}.bundle.json"))
        page.wait_for_function("(n) => Number(document.body.dataset.verifyDone) >= n", arg=i)
        page.wait_for_function("(l) => document.querySelector('#assurance').dataset.level === l", arg=level)
        assert page.get_attribute("#verdict", "data-verified") == "true"
        assert page.text_content("#assurance") == text + "."
        assert page.is_visible("#assurance")


def test_witness_urls_in_the_trust_root_are_judged_alike(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched
) -> None:
    """A witness key's optional ``url`` (its tlog-witness prefix): accepted, or refused, alike."""
    bundle, root = corpus["valid/cosigned-by-two-of-three"]
    doc = json.loads(root)
    cases: dict[str, tuple[bytes, bytes]] = {}
    values: list[Any] = [
        "http://127.0.0.1:8760",
        "https://witness.example/tlog",
        "HTTPS://Witness.Example:443/a/b",
        "http://[::1]:8080",
        "http://[fe80::1%eth0]",
        "http://[::ffff:1.2.3.4]",
        "http://[1:2:3:4:5:6:7:8]",
        "http://[1::2::3]",
        "http://[::1",
        "http://::1]",
        "http://[1.2.3.4]",
        "http://[v1.x]",
        "http://[vz.x]",
        "http://[zz]",
        "http://a:abc",
        "http://a:99999",
        "http://a:",
        "http://@a",
        "http://u:p@a",
        "http://a?",
        "http://a#",
        "http://a?x=1",
        "http://a#f",
        "ftp://witness.example",
        "http://",
        "http:/a",
        "http:a",
        "http://a b",
        " http://a",
        "http://a\n",
        "http://\u00e9.example",
        "http://\u2100.example",
        "http://a/\u00e9",
        "",
        7,
        None,
        ["http://x"],
        "http://" + "a" * 2041,
        "http://" + "a" * 2042,
    ]
    for i, value in enumerate(values):
        changed = copy.deepcopy(doc)
        wkey = next(k for k in changed["keys"] if k["role"] == "witness")
        wkey["url"] = value
        cases[f"witness url {i} {value!r:.40}"] = (bundle, json.dumps(changed).encode())
    # And random URL-shaped strings over the characters the URL rules turn on.
    import random

    rng = random.Random(14)
    alphabet = [*"[]:%@?#/. aZ09fv", "\u00e9", "\u2100", "\t"]
    for i in range(300):
        tail = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        changed = copy.deepcopy(doc)
        scheme = rng.choice(["http://", "https://", "h"])
        next(k for k in changed["keys"] if k["role"] == "witness")["url"] = scheme + tail
        cases[f"random url {i}"] = (bundle, json.dumps(changed).encode())
    changed = copy.deepcopy(doc)
    next(k for k in changed["keys"] if k["role"] == "log")["url"] = "http://127.0.0.1:1"
    cases["a url on a log key"] = (bundle, json.dumps(changed).encode())
    # Attack: one witness key under a second name would count twice (the Ed25519 cosignature does
    # not commit to the name), and a witness named like the log would pose as the log: both refused.
    changed = copy.deepcopy(doc)
    twin = copy.deepcopy(next(k for k in changed["keys"] if k["role"] == "witness"))
    twin["name"] = "witness.test/twin"
    changed["keys"].append(twin)
    cases["one witness key listed twice"] = (bundle, json.dumps(changed).encode())
    changed = copy.deepcopy(doc)
    next(k for k in changed["keys"] if k["role"] == "witness")["name"] = changed["log"]["origin"]
    cases["a witness named like the log"] = (bundle, json.dumps(changed).encode())
    names = list(cases)
    js = js_reports(viewer.page, [cases[n] for n in names])
    accepted = 0
    for name, got in zip(names, js, strict=True):
        code, want = python_report(*cases[name])
        assert verdict(want) == verdict(got["report"]) and code == exit_of(got["report"]), (name, want, got)
        assert _wording(want) == _wording(got["report"]), name
        accepted += code == 0
        if name in ("one witness key listed twice", "a witness named like the log"):
            assert code == 2 and want["failedStep"] == "trust-root" and "witness" in want["error"], (name, want)
    assert 20 <= accepted < len(cases) - 100, accepted


def test_the_drop_zone_is_keyboard_usable(viewer: Watched) -> None:
    page = viewer.page
    with page.expect_file_chooser(timeout=5000) as chooser:
        page.press("#drop", "Enter")
    assert chooser.value.element.get_attribute("id") == "bundle-file"


def test_the_server_trust_root_is_what_export_writes_and_is_pinned_once(ui_server: FiatServer, viewer: Watched) -> None:
    r = httpx.get(ui_server.url + "/v1/trust/root")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    exported = fiat("trust-root", "export", "--home", ui_server.home)
    assert exported.returncode == 0, exported.stderr
    assert r.content == exported.stdout
    fp = "sha256:" + hashlib.sha256(r.content).hexdigest()
    assert r.headers["fiat-trust-root-fingerprint"] == fp
    page = viewer.page
    page.click("#root-fetch")
    page.wait_for_selector("#root-fp")
    assert page.text_content("#root-fp") == fp
    assert sum(u.endswith("/v1/trust/root") for u in viewer.requests) == 1


def test_a_permit_id_in_the_fragment_without_a_token_says_how_to_get_the_bundle(
    ui_server: FiatServer, open_page: Callable[..., Watched]
) -> None:
    w = open_page(ui_server.url, "/ui/verify#pmt_nothing_here")
    w.page.wait_for_selector("body[data-ready='true']")
    text = w.page.text_content("#bundle-status") or ""
    assert "admin token" in text and "fiat bundle pmt_nothing_here" in text
    assert not any("/v1/bundles/" in u for u in w.requests)


# -- (4) timing ----------------------------------------------------------------------------------


def test_browser_and_python_verification_timed_side_by_side(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched, tmp_path: Path
) -> None:
    results = {}
    for name in ("valid/root-execution", "valid/child-with-lineage"):
        bundle, root = corpus[name]
        runs = 15
        py_ms = []
        for _ in range(runs):
            t0 = time.perf_counter()
            python_report(bundle, root)
            py_ms.append((time.perf_counter() - t0) * 1000)
        js = js_reports(viewer.page, [(bundle, root)] * runs, batch=runs)
        assert all(j["report"]["verified"] for j in js)
        js_ms = [j["ms"] for j in js]
        results[name] = {
            "bundleBytes": len(bundle),
            "pythonInProcessMsMedian": round(statistics.median(py_ms), 2),
            "browserMsMedian": round(statistics.median(js_ms[1:]), 2),  # the first one warms key imports
            "browserMsFirst": round(js_ms[0], 2),
            "runs": runs,
        }
    b, r = tmp_path / "b.json", tmp_path / "r.json"
    b.write_bytes(corpus["valid/root-execution"][0])
    r.write_bytes(corpus["valid/root-execution"][1])
    t0 = time.perf_counter()
    proc = fiat("verify", b, "--trust-root", r, "--json")
    results["cliSubprocessMs(valid/root-execution)"] = round((time.perf_counter() - t0) * 1000, 1)  # type: ignore[assignment]
    assert proc.returncode == 0
    # FIAT_VERIFY_TIMING_OUT=path keeps the numbers (for BENCHMARKS.md); by default a temporary file.
    out = Path(os.environ.get("FIAT_VERIFY_TIMING_OUT") or tmp_path / "verify-timing.json")
    out.write_text(json.dumps(results, indent=2))
    print("\nproof viewer timing:", json.dumps(results, indent=2))


# -- /ui/verify#<permit id>: fetched from the server first, then verified with no request -------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FiatServer, Execution, str]]:
    """A real ``fiat serve`` on a home holding a real child execution (with its lineage)."""
    home = tmp_path_factory.mktemp("served") / "home"
    parent = make_execution(home)
    child = make_execution(home, parent=parent.jti)
    token = ensure_admin_token(child.cfg.keys_dir)
    server = FiatServer(home).start()
    try:
        yield server, child, token
    finally:
        server.stop()


def test_a_permit_id_in_the_fragment_fetches_then_verifies_with_no_request(
    served: tuple[FiatServer, Execution, str], open_page: Callable[..., Watched]
) -> None:
    server, child, token = served
    w = open_page(server.url, "/ui/verify")
    page = w.page
    page.wait_for_selector("body[data-ready='true']")
    page.evaluate("(t) => sessionStorage.setItem('fiat.adminToken', t)", token)
    page.click("#root-fetch")
    page.wait_for_selector("#root-fp")
    before = len(w.requests)
    page.evaluate("(jti) => { location.hash = jti; }", child.jti)
    page.wait_for_selector("body[data-verify-done='1']")
    # Exactly one request: the bundle, fetched before verification began; verifying made none.
    assert w.requests[before:] == [f"{server.url}/v1/bundles/{child.jti}"]
    assert steps_shown(page) == [(s, "pass") for s in STEPS]
    assert page.get_attribute("#verdict", "data-verified") == "true"
    shown = page.evaluate("() => window.fiatLast.report")
    assert verdict(shown) == verdict(verify(child.bundle, child.trust_root()).to_json())


def test_a_wrong_admin_token_says_so(
    served: tuple[FiatServer, Execution, str], open_page: Callable[..., Watched]
) -> None:
    server, child, _ = served
    w = open_page(server.url, "/ui/verify")
    w.page.wait_for_selector("body[data-ready='true']")
    w.page.evaluate("() => sessionStorage.setItem('fiat.adminToken', 'not-the-token')")
    w.console_errors.clear()
    w.page.evaluate("(jti) => { location.hash = jti; }", child.jti)
    w.page.wait_for_selector("#bundle-status.bad")
    assert "Check the admin token" in (w.page.text_content("#bundle-status") or "")
    # The browser logs the refused fetch (401) itself; that is the test's point, not a page error.
    w.console_errors[:] = [e for e in w.console_errors if "401" not in e and "Unauthorized" not in e]


# -- wrong types everywhere: in the bundle, in the trust root, and behind valid signatures ------------

REPLACEMENTS: dict[str, Any] = {
    "null": None,
    "zero": 0,
    "negative": -1,
    "float": 1.5,
    "huge-int": 2**70,
    "true": True,
    "list": [],
    "list-of-junk": [None, {}, "x"],
    "object": {},
    "object-of-junk": {"a": [1]},
    "empty-string": "",
    "long-string": "x" * 5000,
}

Path_ = tuple[str | int, ...]


def positions(v: Any, path: Path_ = ()) -> Iterator[Path_]:
    yield path
    if isinstance(v, dict):
        for k in v:
            yield from positions(v[k], (*path, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            yield from positions(x, (*path, i))


def replaced(doc: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(doc)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def variants(doc: Any) -> Iterator[tuple[str, Any]]:
    """``doc`` with each replacement at each position, and a lone surrogate before each string."""
    for path in positions(doc):
        for kind, value in REPLACEMENTS.items():
            yield f"{'/'.join(map(str, path))}={kind}", replaced(doc, path, value)
    for path in positions(doc):
        node = doc
        for p in path:
            node = node[p]
        if isinstance(node, str):
            yield f"{'/'.join(map(str, path))}=surrogate", replaced(doc, path, "\ud800" + node)


#: Times as a signer might write them: Python's fromisoformat (3.11) reads far more than RFC 3339,
#: and the browser must read each one the same (or refuse it the same).
ODD_TIMES = [
    "2026-01-31T12:00:00.5Z",
    "2026-01-31T12:00Z",
    "2026-01-31T12Z",
    "20260131T120000Z",
    "2026-W05-6T12:00:00Z",
    "2026W056T12:00:00Z",
    "2026-W05T12:00Z",
    "2026W05T12Z",
    "2026-W53-1T00:00Z",
    "2020-W53-1T00:00Z",
    "2026-W00-1T00:00Z",
    "2026-W05-8T00:00Z",
    "2026-031T12:00:00Z",
    "2026-02-30T12:00:00Z",
    "2024-02-29T12:00:00Z",
    "2026-01-31T24:00:00Z",
    "2026-01-31T12:00:00+01:00Z",
    "2026-01-31t12:00:00Z",
    "2026-01-31T12:00:00.1234567Z",
    "2026-01-31T12:00:00.12Z",
    "2026-01-31T12:00:00,5Z",
    "2026-01-31T1200Z",
    "2026-01-31T120000Z",
    "2026-01-31T120000.5Z",
    "2026-01-31T12:00:00.123456789Z",
    "0000-01-31T12:00:00Z",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0099-06-01T00:00:00Z",
    "2026-01-31T12:00:60Z",
    "2026-01-31T12:00:00-00:00Z",
    "2026-01-31T12:00:00 Z",
    "2026-01-31T12:00:00.Z",
    "2026-01-31T12:00:00+0000Z",
    "2026-01-31T12:00:00.000+00:00Z",
    "2026-01-31 T12:00Z",
    "2026-01-3112:00:00TZ",
    "2026-01-31T12:00:00UTCZ",
    "2026-01-31X12:00:00TZ",
    "2026-01-31é12:00:00TZ",
    "T2026-01-31Z",
    "2026-01-31TZ",
    "2026-01-31T1Z",
    "2026-01-31T12:0Z",
    "2026-01-31T12:00:00:5Z",
    "2026-01-31T12:00:00.Z",
    "2026-01-31T12:00:00..5Z",
    "2026-01-31T12:00:00.5.Z",
    "2026-01T12Z",
    "2026TZ",
    "2026-01-31T12:00:00.-5Z",
    "2026-01-31T-12Z",
    "2026-01-31T12-05Z",
    "2026-01-31T12:00-05:30Z",
    "2026-01-31T12:00+05:30:15.5Z",
    "2026-01-31T12:00:00+23:59Z",
    "2026-01-31T12:00:00-24:00Z",
    "2026-1-31T12:00:00Z",
    "2026-01-31T12:00:00Zx",
    "2026-01-31€12:00:00TZ",
    "2026-01-31😀12:00:00TZ",
    "2026-01-31ü12Z",
    "2026-0é-31T12Z",
    "20260131é12Z",
]


def resigned_variants(w: Any) -> dict[str, tuple[bytes, bytes]]:
    """Changes behind valid signatures: the permit's claims re-signed by the authority key, the
    receipt's and the decision's predicates re-signed by the keys entitled to sign them, so that
    the steps after the signature checks (claims, receipt, decision, …) are what must refuse them."""
    ring = keyring(w.cfg)
    arec, akey = ring.signing_key("authority")
    rrec, rkey = ring.signing_key("runtime", w.cfg.runtime_name)
    base = tamper.bj_of(w.base)
    root = tamper._root_bytes(w.root)
    token = base["permit"]["token"]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    out: dict[str, tuple[bytes, bytes]] = {}
    for name, changed in variants(claims):
        bj = copy.deepcopy(base)
        payload = json.dumps(changed, separators=(",", ":")).encode()
        bj["permit"]["token"] = jwslib.sign_compact(payload, akey, kid=arec.kid, typ="fiat-permit+jwt")
        out[f"claims {name}"] = (tamper._as_bytes(bj), root)
    for ptype, (rec, key) in ((RECEIPT, (rrec, rkey)), (DECISION, (arec, akey))):
        i = tamper.index_of(base, ptype)
        statement = tamper.statement_payload(base["statements"][i])
        field = "end" if ptype == RECEIPT else "time"
        odd = ((f"{field}={t}", {**statement["predicate"], field: t}) for t in ODD_TIMES)
        for name, predicate in itertools.chain(variants(statement["predicate"]), odd):
            bj = copy.deepcopy(base)
            body = json.dumps({**statement, "predicate": predicate}, separators=(",", ":")).encode()
            env = sign_envelope("application/vnd.in-toto+json", body, [(rec.kid, key)])
            bj["statements"][i]["envelope"] = env.to_json()
            out[f"{ptype.rsplit('/', 2)[-2]} {name}"] = (tamper._as_bytes(bj), root)
    return out


def test_wrong_types_everywhere_are_judged_alike(
    world: Any, corpus: dict[str, tuple[bytes, bytes]], viewer: Watched
) -> None:
    bundle, root = corpus["valid/root-execution"]
    bundle_json, root_json = json.loads(bundle), json.loads(root)
    cases: dict[str, tuple[bytes, bytes]] = {}
    for name, doc in variants(bundle_json):
        cases[f"bundle {name}"] = (json.dumps(doc).encode(), root)
    for name, doc in variants(root_json):
        cases[f"trust root {name}"] = (bundle, json.dumps(doc).encode())
    cases.update(resigned_variants(world))
    names = list(cases)
    js = js_reports(viewer.page, [cases[n] for n in names], batch=64)
    disagree = []
    outcomes: dict[str, int] = {}
    worded = []
    for name, got in zip(names, js, strict=True):
        code, want = python_report(*cases[name])
        outcomes[str(want["failedStep"])] = outcomes.get(str(want["failedStep"]), 0) + 1
        if verdict(want) != verdict(got["report"]) or code != exit_of(got["report"]):
            disagree.append(f"{name!a}: python {verdict(want)[:2]} browser {verdict(got['report'])[:2]}")
        elif _wording(want) != _wording(got["report"]):
            worded.append(f"{name!a}: {_wording(want)!a} vs {_wording(got['report'])!a}")
    assert not disagree, f"{len(disagree)} of {len(names)} disagree:\n" + "\n".join(disagree[:60])
    print(f"\n{len(names)} wrong-type variants judged alike: {outcomes}; {len(worded)} worded differently")
    assert not worded, "\n".join(worded[:20])


def _wording(report: Report) -> str:
    """The failing step's detail, or the malformed input's error: where wording may differ."""
    failed = [s["detail"] for s in report.get("steps", ()) if s["status"] == "fail"]
    return failed[0] if failed else str(report.get("error", ""))


def test_a_pasted_trust_root_is_pinned_and_a_malformed_one_refused_as_the_cli_refuses_it(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched, tmp_path: Path
) -> None:
    page = viewer.page
    bundle, root = corpus["valid/child-with-lineage"]
    (tmp_path / "b.json").write_bytes(bundle)
    broken = root.replace(b'"issuer"', b'"issuer": 1, "issuer"', 1)
    page.fill("#root-text", broken.decode())
    page.click("#root-paste")
    page.wait_for_selector("#root-fp")
    assert page.text_content("#root-fp") == "sha256:" + hashlib.sha256(broken).hexdigest()
    page.set_input_files("#bundle-file", str(tmp_path / "b.json"))
    page.wait_for_selector("body[data-verify-done='1']")
    assert page.get_attribute("#verdict", "data-failed-step") == "trust-root"
    code, want = python_report(bundle, broken)
    assert code == 2 and want["error"] in (page.text_content("#verdict") or "")
    page.fill("#root-text", root.decode())
    page.click("#root-paste")
    page.wait_for_selector("body[data-verify-done='2']")
    assert page.get_attribute("#verdict", "data-verified") == "true"
    assert steps_shown(page) == [(s, "pass") for s in STEPS]


def test_a_served_trust_root_whose_fingerprint_header_lies_is_not_pinned(
    corpus: dict[str, tuple[bytes, bytes]], viewer: Watched
) -> None:
    """A server (or a proxy) that swaps the trust root but not the fingerprint it announces is caught."""
    _, root = corpus["valid/root-execution"]
    page = viewer.page
    page.route(
        "**/v1/trust/root",
        lambda route: route.fulfill(
            status=200,
            body=root,
            headers={"Content-Type": "application/json", "Fiat-Trust-Root-Fingerprint": "sha256:" + "0" * 64},
        ),
    )
    page.click("#root-fetch")
    page.wait_for_selector("#root-status.bad")
    assert "is not that of the bytes served" in (page.text_content("#root-status") or "")
    assert page.locator("#root-fp").count() == 0
    assert page.evaluate("() => localStorage.getItem('fiat.verify.trustRoot')") is None


def test_a_fetched_bundle_is_judged_on_its_raw_bytes(
    served: tuple[FiatServer, Execution, str], open_page: Callable[..., Watched]
) -> None:
    """What the server sends is what is verified: a duplicate member name that JSON.parse would
    quietly resolve is refused as malformed, exactly as ``fiat verify`` refuses it."""
    server, child, token = served
    w = open_page(server.url, "/ui/verify")
    page = w.page
    page.wait_for_selector("body[data-ready='true']")
    page.evaluate("(t) => sessionStorage.setItem('fiat.adminToken', t)", token)
    page.click("#root-fetch")
    page.wait_for_selector("#root-fp")
    real = httpx.get(f"{server.url}/v1/bundles/{child.jti}", headers={"Authorization": f"Bearer {token}"}).content
    doubled = real.replace(b'"statements":', b'"statements":[],"statements":', 1)
    assert doubled != real
    page.route(
        f"**/v1/bundles/{child.jti}",
        lambda route: route.fulfill(status=200, body=doubled, headers={"Content-Type": "application/json"}),
    )
    page.evaluate("(jti) => { location.hash = jti; }", child.jti)
    page.wait_for_selector("body[data-verify-done='1']")
    root = httpx.get(server.url + "/v1/trust/root").content
    code, want = python_report(doubled, root)
    assert code == 2 and want["failedStep"] == "bundle-format"
    assert page.get_attribute("#verdict", "data-failed-step") == "bundle-format"
    assert want["error"] in (page.text_content("#verdict") or "")


# -- (4) split-view proofs, alike -----------------------------------------------------------------------


def split_view_cases(world: Any, root: bytes) -> dict[str, tuple[bytes, bytes]]:
    """Split-view proofs signed by the corpus home's real log key: valid ones of each kind, and
    tamperings at each of the three steps (tests/verify/test_split_view.py has the full set)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fiat.home import log_signer
    from fiat.tlog import note
    from fiat.tlog.checkpoint import Checkpoint, sign_checkpoint
    from fiat.verify import split_view
    from support.reference_merkle import MemoryTree

    signer = log_signer(world.cfg)
    origin = world.cfg.log.origin

    def signed(tree: MemoryTree, by: note.Signer = signer) -> Any:
        return sign_checkpoint(Checkpoint(by.name, tree.size, tree.root()), by)

    def fork(prefix: int, a: int, b: int) -> tuple[MemoryTree, MemoryTree]:
        common = [f"c{i}".encode() for i in range(prefix)]
        return (
            MemoryTree([*common, *(f"a{i}".encode() for i in range(a))]),
            MemoryTree([*common, *(f"b{i}".encode() for i in range(b))]),
        )

    def grown(a: MemoryTree, b: MemoryTree, **kw: Any) -> Any:
        return split_view.build(signed(a), signed(b), old_root=b.root(a.size), proof=b.consistency_proof(a.size), **kw)

    out: dict[str, bytes] = {}
    a, b = fork(3, 3, 3)
    out["equal sizes"] = split_view.build(
        signed(a), signed(b), observed_by="w1", observed_at="2026-12-02T15:00:00Z"
    ).encode()
    for prefix, x, y in ((2, 2, 5), (3, 3, 8), (5, 2, 40)):
        small, large = fork(prefix, x, y)
        out[f"old size {small.size} to {large.size}"] = grown(small, large).encode()
    empty_bad = sign_checkpoint(Checkpoint(origin, 0, b"\x01" * 32), signer)
    out["a signed empty tree with another root"] = split_view.build(empty_bad, signed(b)).encode()
    honest = MemoryTree([f"e{i}".encode() for i in range(9)])
    out["one history"] = split_view.build(
        sign_checkpoint(Checkpoint(origin, 5, honest.root(5)), signer),
        signed(honest),
        old_root=honest.root(5),
        proof=honest.consistency_proof(5),
    ).encode()
    small, large = fork(3, 2, 6)
    good = grown(small, large)
    flipped = bytearray(good.proof[0])
    flipped[3] ^= 1
    out["proof hash flipped"] = dataclasses_replace(good, proof=(bytes(flipped), *good.proof[1:])).encode()
    out["oldRoot is A's root"] = dataclasses_replace(good, old_root=small.root()).encode()
    out["evidence where none is needed"] = dataclasses_replace(
        split_view.build(signed(a), signed(b)), old_root=b.root(2), proof=tuple(b.consistency_proof(2))
    ).encode()
    doc = json.loads(good.encode())
    doc["checkpoints"] = doc["checkpoints"][::-1]
    out["checkpoints swapped"] = json.dumps(doc).encode()
    doc = json.loads(good.encode())
    doc["checkpoints"][1] = doc["checkpoints"][1].replace("\n9\n", "\n10\n", 1)
    out["checkpoint text edited"] = json.dumps(doc).encode()
    stranger = note.Signer(origin, Ed25519PrivateKey.generate())
    out["signed by another key"] = split_view.build(signed(a), signed(b, stranger)).encode()
    elsewhere = note.Signer("elsewhere.example/log", Ed25519PrivateKey.generate())
    out["another log's origin"] = split_view.build(signed(a, elsewhere), signed(b, elsewhere)).encode()
    raw = good.encode().decode()
    out["duplicate member"] = raw.replace('"origin": ', f'"origin": "{origin}", "origin": ', 1).encode()
    out["unknown member"] = raw.replace('"origin": ', '"extra": 1, "origin": ', 1).encode()
    out["bad base64"] = raw.replace('"oldRoot": "', '"oldRoot": "!', 1).encode()
    for label, value in (("non-canonical base64", "AB=="), ("short hash", "AAAA")):
        d = json.loads(raw)
        d["consistency"]["oldRoot"] = value
        out[label] = json.dumps(d).encode()
    out["lone surrogate"] = raw.replace('"origin": "', '"origin": "\\ud800', 1).encode()
    out["three checkpoints"] = raw.replace('"checkpoints": [', '"checkpoints": ["x", ', 1).encode()
    out["NaN in a split-view proof"] = raw.replace('"origin": ', '"n": NaN, "origin": ', 1).encode()
    out["truncated"] = good.encode()[:-40]
    out["byte order mark"] = b"\xef\xbb\xbf" + good.encode()
    out["invalid UTF-8"] = good.encode().replace(b'"origin"', b'"\xff": 1, "origin"', 1)
    return {name: (data, root) for name, data in out.items()}


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


def split_view_python(bundle: bytes, root: bytes) -> tuple[int, Report]:
    """What ``fiat verify PROOF --trust-root ROOT --json`` prints, and its exit status."""
    from fiat.cli.verify import is_split_view
    from fiat.verify import verify_split_view

    try:
        parsed_root = TrustRoot.parse(root)
    except MalformedError as exc:
        return 2, {"verified": False, "failedStep": "trust-root", "error": str(exc)}
    if not is_split_view(bundle):
        return python_report(bundle, root)
    result = verify_split_view(bundle, parsed_root)
    return (0 if result.proven else 2 if result.malformed else 1), result.to_json()


JS_EXIT = "async (cases) => { const m = await import('/ui/assets/verifier/verify.js'); const dec = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0)); const out = []; for (const [b, r] of cases) { const report = await m.verifyBundle(dec(b), dec(r)); out.push({ report, exit: m.exitCodeOf(report) }); } return out; }"  # noqa: E501


def test_split_view_proofs_are_judged_alike(
    world: Any, corpus: dict[str, tuple[bytes, bytes]], viewer: Watched
) -> None:
    """Every report identical (steps, details, summary, checkpoints), and the same exit status."""
    cases = split_view_cases(world, corpus["valid/root-execution"][1])
    names = list(cases)
    js = viewer.page.evaluate(JS_EXIT, [[b64(b), b64(r)] for b, r in (cases[n] for n in names)])
    outcomes: dict[str, int] = {}
    for name, got in zip(names, js, strict=True):
        code, want = split_view_python(*cases[name])
        assert got["report"] == want, (name, want, got["report"])
        assert got["exit"] == code, (name, code, got["exit"])
        outcomes[str(want["failedStep"])] = outcomes.get(str(want["failedStep"]), 0) + 1
    assert outcomes["None"] == 5, outcomes  # equal sizes, three grown forks, the bad empty tree
    assert {"split-view-format", "split-view-signatures", "split-view-inconsistency"} <= set(outcomes), outcomes


def test_the_page_shows_a_proven_split_view(
    world: Any, corpus: dict[str, tuple[bytes, bytes]], viewer: Watched, tmp_path: Path
) -> None:
    page = viewer.page
    cases = split_view_cases(world, corpus["valid/root-execution"][1])
    proof, root = cases["old size 6 to 11"]
    (tmp_path / "root.json").write_bytes(root)
    (tmp_path / "fork.json").write_bytes(proof)
    page.set_input_files("#root-file", str(tmp_path / "root.json"))
    page.wait_for_selector("#root-fp")
    before = len(viewer.requests)
    page.set_input_files("#bundle-file", str(tmp_path / "fork.json"))
    page.wait_for_selector("body[data-verify-done='1']")
    assert viewer.requests[before:] == []
    assert steps_shown(page) == [
        (s, "pass") for s in ("split-view-format", "split-view-signatures", "split-view-inconsistency")
    ]
    text = page.text_content("#verdict") or ""
    assert text.startswith(
        f"PROVEN: the log {world.cfg.log.origin} signed two inconsistent checkpoints: checkpoint 11's history"
    )
    assert page.get_attribute("#verdict", "data-verified") == "true"
    assert page.is_hidden("#assurance")
