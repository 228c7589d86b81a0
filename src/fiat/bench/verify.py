"""``fiat bench verify``: offline bundle verification speed beside its Ed25519 floor.

Builds real bundles in a scratch home (real keys, log and signatures), then
times ``Bundle.parse`` + ``verify`` against the floor of the same number of
raw Ed25519 verifications (permit + statements + distinct checkpoints), all in
the same run.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.progress import Progress

from fiat.authorize.permit import Constraints, PermitRequest, PolicyRef, mint_permit
from fiat.bench.log import _scratch, machine
from fiat.config import load_config
from fiat.formats.action import action_digest, action_request
from fiat.formats.jws import parse as parse_jws
from fiat.home import init_home, keyring, trust_root
from fiat.prove import evidence as ev
from fiat.verify import Bundle, verify
from fiat.wiring import open_evidence


def build_bundles(home: Path, count: int, progress: Progress | None = None) -> tuple[list[bytes], bytes]:
    """``count`` real executions (permit, decision, receipt) and the trust root, as bytes."""
    init_home(home)
    cfg = load_config(home, require=True)
    ring = keyring(cfg)
    arec, akey = ring.signing_key("authority")
    rrec, rkey = ring.signing_key("runtime")
    env = hashlib.sha256(b"bench environment").hexdigest()
    policy = PolicyRef(hashlib.sha256(b"bench policy").hexdigest(), 1, ("bench",))
    recorder = open_evidence(cfg)
    task = progress.add_task("building bundles", total=count) if progress else None
    jtis = []
    try:
        for i in range(count):
            t = time.time()
            request = action_request("agent:bench", "tool:call", f"resource:{i}", {"i": i})
            token, claims = mint_permit(
                PermitRequest(request, rrec.public_key, policy, env, constraints=Constraints(max_duration=60)),
                key=akey,
                kid=arec.kid,
                issuer=cfg.authority.issuer,
                audience=cfg.authority.audience,
            )
            jti, digest = claims["jti"], parse_jws(token).digest
            recorder.record_permit(token, request)
            decision = ev.decision_statement(
                decision="allow",
                reason="bench",
                request=request,
                request_digest=action_digest(request),
                policy=policy.to_json(),
                at=t,
                permit=(jti, digest),
            )
            recorder.record_statement(ev.sign_statement(decision, [(arec.kid, akey)]), jti)
            receipt = ev.receipt_statement(
                permit_id=jti,
                permit_digest=digest,
                start=t,
                end=t,
                outcome="completed",
                exit_code=0,
                halt_reason=None,
                verifications=1,
                verification_chain=hashlib.sha256(b"").hexdigest(),
                measurement_start={"digest": {"sha256": env}},
                measurement_end={"digest": {"sha256": env}},
            )
            recorder.record_statement(ev.sign_statement(receipt, [(rrec.kid, rkey)]), jti)
            jtis.append(jti)
            if progress and task is not None:
                progress.update(task, completed=i + 1)
        bundles = [json.dumps(recorder.bundle(j).to_json()).encode() for j in jtis]
    finally:
        recorder.close()
    return bundles, json.dumps(trust_root(cfg).to_json()).encode()


def run_verify_bench(
    bundles: int = 50, seconds: float = 3.0, workdir: Path | None = None, console: Console | None = None
) -> dict[str, Any]:
    from fiat.verify import TrustRoot

    progress = Progress(console=console, transient=True, disable=console is None)
    with progress, _scratch(workdir) as tmp:
        data, root_bytes = build_bundles(tmp / "home", bundles, progress)
        root = TrustRoot.parse(root_bytes)
        sample = Bundle.parse(data[0])
        signatures = 1 + len(sample.statements) + 1  # permit, statements, one shared checkpoint
        for raw in data:  # sanity: every bundle verifies
            if not verify(Bundle.parse(raw), root).verified:
                raise RuntimeError("a freshly built bundle did not verify")
        progress.add_task("timing", total=None)
        n = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            verify(Bundle.parse(data[n % len(data)]), root)
            n += 1
        per_bundle = (time.perf_counter() - start) / n
        key = Ed25519PrivateKey.generate()
        pub = key.public_key()
        msg = b"x" * 512
        sig = key.sign(msg)
        reps = 20_000
        t0 = time.perf_counter()
        for _ in range(reps):
            pub.verify(sig, msg)
        ed_verify = (time.perf_counter() - t0) / reps
    floor = ed_verify * signatures
    return {
        "benchmark": "verify",
        "machine": machine(),
        "bundle_bytes": len(data[0]),
        "signatures_per_bundle": signatures,
        "bundles_per_s": round(1 / per_bundle),
        "per_bundle_us": round(per_bundle * 1e6, 1),
        "floor_per_bundle_us": round(floor * 1e6, 1),
        "floor_bundles_per_s": round(1 / floor),
        "ratio": round(per_bundle / floor, 2),
        "ed25519_verify_us": round(ed_verify * 1e6, 1),
    }


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    return "\n".join(
        [
            f"### `fiat bench verify` — {m['cpu']}, {m['cores']} cores, Python {m['python']}",
            "",
            f"Bundle: permit + decision + receipt, {r['bundle_bytes']:,} bytes, "
            f"{r['signatures_per_bundle']} Ed25519 signatures (permit, 2 statements, 1 checkpoint).",
            "",
            "| | per bundle (µs) | bundles/s |",
            "|---|---:|---:|",
            f"| floor: {r['signatures_per_bundle']} raw Ed25519 verifications | {r['floor_per_bundle_us']} | "
            f"{r['floor_bundles_per_s']:,} |",
            f"| `fiat.verify`: parse + all 15 steps | {r['per_bundle_us']} | {r['bundles_per_s']:,} |",
            "",
            f"Ratio to the floor: {r['ratio']}×.",
        ]
    )
