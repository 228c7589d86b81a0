"""A forked log caught by a guard, and proven (issue 14, "Split views").

The fork is real: two :class:`~fiat.prove.log.TransparencyLog` stores signed by one log key, with a
common prefix and then different entries (:class:`support.forked_log.ForkedLog`). The guard's
authority serves side B's tiles over real HTTP (:class:`support.forked_log.TileServer`); a real
:class:`~fiat.enforce.trust.TrustMonitor` is fed real signed trust states.

(a) Two trust states whose checkpoints are inconsistent: the guard halts at ``log-continuity`` and
    writes a split-view proof (mode 0600) that :func:`fiat.verify.split_view.verify` accepts, and
    ``fiat verify`` too; a tampered copy is rejected.
(b) Gossip: the guard only ever talks to side B; a real witness (``fiat witness serve``) holds side A.
    The guard asks the witness for its checkpoint, halts, and writes the proof.
"""

from __future__ import annotations

import base64
import contextlib
import json
import stat
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

import fiat
from fiat.enforce.guard import GuardSettings, Session
from fiat.enforce.trust import TrustMonitor
from fiat.errors import FiatError, VerificationError
from fiat.prove.audit import HttpFetcher
from fiat.tlog import note
from fiat.verify import split_view
from support import witnesses
from support.forked_log import ACTION, PRINCIPAL, RESOURCE, ForkedLog, TileServer, World, checked_session, witness_key


@pytest.fixture
def world() -> World:
    return World(witnesses=3, quorum=0)


@contextlib.contextmanager
def fork(tmp_path: Path, world: World, common: int, a: int, b: int) -> Iterator[tuple[ForkedLog, TileServer]]:
    forked = ForkedLog(tmp_path / "fork", world.signer, common, a, b)
    tiles = TileServer(forked.b)
    try:
        yield forked, tiles
    finally:
        tiles.stop()
        forked.close()


def session(world: World, monitor: TrustMonitor, tmp_path: Path) -> Session:
    return checked_session(world, monitor, tmp_path, GuardSettings(heartbeat=0.1, staleness=5.0), "pmt_split_view_test")


def wait_split_view(monitor: TrustMonitor, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if monitor.snapshot().split_view:
            return
        time.sleep(0.02)
    raise AssertionError(f"no split view within {timeout} s: {monitor.snapshot()}")


def check_proof_file(path: Path, world: World, sizes: tuple[int, int]) -> split_view.SplitViewProof:
    """The file is private (0600), under ``split-views/`` named ``<UTC time>-<origin hash[:12]>.json``,
    and proves the split view by the verifier's rules; a tampered copy does not."""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.parent.name == "split-views" and path.name.endswith(".json")
    from fiat.tlog.witness import origin_hash

    assert path.stem.endswith(origin_hash(world.root.log_origin)[:12]), path.name
    proof = split_view.SplitViewProof.parse(path.read_bytes())
    proven = split_view.verify(proof, world.root.log_verifiers())
    assert (proven.first.size, proven.second.size) == sizes
    # Tampered: another old root, or the proof's checkpoints swapped for consistent ones.
    doc = json.loads(path.read_bytes())
    if "consistency" in doc:
        doc["consistency"]["oldRoot"] = note.b64(bytes(32))
        with pytest.raises(VerificationError) as info:
            split_view.verify(split_view.SplitViewProof.parse(json.dumps(doc).encode()), world.root.log_verifiers())
        assert info.value.step == "split-view-inconsistency"
    doc = json.loads(path.read_bytes())
    doc["checkpoints"][1] = doc["checkpoints"][0]
    with pytest.raises(VerificationError):
        split_view.verify(split_view.SplitViewProof.parse(json.dumps(doc).encode()), world.root.log_verifiers())
    return proof


@pytest.mark.parametrize(("a", "b"), [(3, 6), (3, 3)], ids=["B-larger", "same-size"])
def test_inconsistent_trust_state_checkpoints_halt_and_are_proven(tmp_path: Path, world: World, a: int, b: int) -> None:
    """(a) The first state embeds side A's checkpoint, the next side B's: the consistency proof from B's
    own tiles fails, the guard halts at log-continuity naming the proof file, and the file proves it."""
    with fork(tmp_path, world, 5, a, b) as (forked, tiles):
        cp_a, cp_b = forked.checkpoint_a, forked.checkpoint_b
        monitor = TrustMonitor(tiles.url, world.root)
        monitor.proof_dir = tmp_path / "home" / "split-views"
        monitor.start()
        try:
            monitor.accept(world.state(cp_a.note_bytes))
            s = session(world, monitor, tmp_path)
            s.check()  # side A alone: all is well
            monitor.accept(world.state(cp_b.note_bytes))
            wait_split_view(monitor)
            snap = monitor.snapshot()
            assert snap.split_view_file is not None and snap.split_view_proof is not None, snap
            with pytest.raises(fiat.Halt) as info:
                s.check()
            assert info.value.step == "log-continuity"
            assert str(snap.split_view_file) in info.value.reason and "fiat verify" in info.value.reason
            check_proof_file(snap.split_view_file, world, (cp_a.size, cp_b.size))
        finally:
            monitor.stop()


def test_a_signed_empty_tree_with_another_root_is_proven(tmp_path: Path, world: World) -> None:
    """RFC 6962 §2.1: the empty tree has one root; a log that signed another one for size 0 is caught."""
    from fiat.tlog.checkpoint import Checkpoint, sign_checkpoint

    bogus = sign_checkpoint(Checkpoint(world.root.log_origin, 0, bytes(range(32))), world.signer)
    with fork(tmp_path, world, 5, 0, 2) as (forked, tiles):
        monitor = TrustMonitor(tiles.url, world.root)
        monitor.proof_dir = tmp_path / "home" / "split-views"
        monitor.start()
        try:
            monitor.accept(world.state(bogus.note_bytes))
            monitor.accept(world.state(forked.checkpoint_b.note_bytes))
            wait_split_view(monitor)
            path = monitor.snapshot().split_view_file
            assert path is not None
            proven = split_view.verify(split_view.SplitViewProof.parse(path.read_bytes()), world.root.log_verifiers())
            assert proven.first.size == 0 and "empty tree" in proven.summary
        finally:
            monitor.stop()


def test_a_rollback_to_another_history_halts_even_without_an_offline_proof(tmp_path: Path, world: World) -> None:
    """Side B is smaller than side A: B's tiles cannot show A's size, so no proof is written, but the
    guard halts all the same (a smaller tree is never accepted)."""
    with fork(tmp_path, world, 5, 6, 3) as (forked, tiles):
        monitor = TrustMonitor(tiles.url, world.root)
        monitor.proof_dir = tmp_path / "home" / "split-views"
        monitor.start()
        try:
            monitor.accept(world.state(forked.checkpoint_a.note_bytes))
            monitor.accept(world.state(forked.checkpoint_b.note_bytes))
            wait_split_view(monitor)
            snap = monitor.snapshot()
            assert snap.split_view is not None and "rollback" in snap.split_view
            assert snap.split_view_file is None and not monitor.proof_dir.exists()
            with pytest.raises(fiat.Halt) as info:
                session(world, monitor, tmp_path).check()
            assert info.value.step == "log-continuity"
        finally:
            monitor.stop()


def test_an_honest_extension_is_not_a_split_view(tmp_path: Path, world: World) -> None:
    with fork(tmp_path, world, 5, 0, 0) as (forked, tiles):
        first = forked.checkpoint_b
        grown = forked.grow("b", [b"one more", b"and another"])
        monitor = TrustMonitor(tiles.url, world.root)
        monitor.proof_dir = tmp_path / "home" / "split-views"
        monitor.start()
        try:
            monitor.accept(world.state(first.note_bytes))
            monitor.accept(world.state(grown.note_bytes))
            deadline = time.monotonic() + 10
            while monitor.snapshot().checkpoint != grown and time.monotonic() < deadline:
                time.sleep(0.02)
            snap = monitor.snapshot()
            assert snap.checkpoint == grown and snap.split_view is None, snap
            assert not (tmp_path / "home" / "split-views").exists()
        finally:
            monitor.stop()


@pytest.mark.parametrize(("a", "b"), [(3, 6), (3, 3)], ids=["witness-smaller", "same-size"])
def test_gossip_with_a_real_witness_holding_the_other_side_halts_and_proves_it(tmp_path: Path, a: int, b: int) -> None:
    """(b) The guard's authority serves side B only; a real witness was shown side A (submitted to it
    with C2SP tlog-witness add-checkpoint). Gossip finds the fork: the guard halts at log-continuity
    and writes a split-view proof that the verifier accepts."""
    from fiat.tlog.witness import ADD_CHECKPOINT_PATH, AddCheckpointRequest

    base = World(witnesses=0, quorum=0)
    with fork(tmp_path, base, 5, a, b) as (forked, tiles):
        w = witnesses.start_witness(tmp_path, "witness.test/gossip", base.signer.verifier.encode())
        monitor = None
        try:
            submitted = AddCheckpointRequest(0, (), forked.checkpoint_a.note_bytes).encode()
            r = httpx.post(w.url + ADD_CHECKPOINT_PATH, content=submitted, timeout=10)
            assert r.status_code == 200, (r.status_code, r.text)
            base.external.append(witness_key(w.vkey, w.url))
            base.root = base.make_root()
            monitor = TrustMonitor(tiles.url, base.root)
            monitor.proof_dir = tmp_path / "home" / "split-views"
            monitor.gossip_interval = 0.2
            monitor.start()
            monitor.accept(base.state(forked.checkpoint_b.note_bytes))
            session(base, monitor, tmp_path).check()  # side B alone looks fine to the guard
            wait_split_view(monitor)
            snap = monitor.snapshot()
            assert snap.split_view is not None and "witness.test/gossip" in snap.split_view, snap.split_view
            assert snap.split_view_file is not None
            with pytest.raises(fiat.Halt) as info:
                session(base, monitor, tmp_path).check()
            assert info.value.step == "log-continuity" and str(snap.split_view_file) in info.value.reason
            proof = check_proof_file(snap.split_view_file, base, (forked.checkpoint_a.size, forked.checkpoint_b.size))
            assert "gossip with witness witness.test/gossip" in proof.observed_by
        finally:
            if monitor is not None:
                monitor.stop()
            w.stop()


class _Dribbler(BaseHTTPRequestHandler):
    """A hostile witness: answers 200 and then one byte of its "checkpoint" every 0.2 s, forever."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        try:
            while not getattr(self.server, "done", False):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


def test_a_dribbling_witness_neither_hangs_gossip_nor_hides_a_fork(tmp_path: Path) -> None:
    """Attack: a witness that never finishes its answer (a byte at a time, each read within the
    client's timeout) is asked first. Its answer is cut off at the gossip deadline, the witnesses are
    asked concurrently, and the honest witness that holds the other side still proves the fork."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fiat.enforce.trust import GOSSIP_DEADLINE, get_bounded
    from fiat.tlog.witness import ADD_CHECKPOINT_PATH, AddCheckpointRequest
    from fiat.verify.trust_root import cosigner_vkey

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Dribbler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hostile = f"http://127.0.0.1:{server.server_address[1]}"
    base = World(witnesses=0, quorum=0)
    try:
        started = time.monotonic()
        with httpx.Client(timeout=5.0) as client, pytest.raises(FiatError, match="took more than"):
            get_bounded(client, hostile + "/x", deadline_s=1.0)
        assert time.monotonic() - started < 3.0
        with fork(tmp_path, base, 5, 3, 6) as (forked, tiles):
            w = witnesses.start_witness(tmp_path, "witness.test/honest", base.signer.verifier.encode())
            monitor = None
            try:
                submitted = AddCheckpointRequest(0, (), forked.checkpoint_a.note_bytes).encode()
                assert httpx.post(w.url + ADD_CHECKPOINT_PATH, content=submitted, timeout=10).status_code == 200
                slow = cosigner_vkey(
                    "witness.test/dribbler", Ed25519PrivateKey.generate().public_key().public_bytes_raw()
                )
                base.external += [witness_key(slow, hostile), witness_key(w.vkey, w.url)]
                base.root = base.make_root()
                monitor = TrustMonitor(tiles.url, base.root)
                monitor.proof_dir = tmp_path / "home" / "split-views"
                monitor.gossip_interval = 0.2
                monitor.start()
                monitor.accept(base.state(forked.checkpoint_b.note_bytes))
                found = time.monotonic()
                wait_split_view(monitor)
                assert time.monotonic() - found < GOSSIP_DEADLINE, "the dribbling witness delayed the honest one"
                assert "witness.test/honest" in (monitor.snapshot().split_view or "")
            finally:
                if monitor is not None:
                    monitor.stop()
                w.stop()
    finally:
        server.done = True  # type: ignore[attr-defined]
        server.shutdown()


def test_gossip_with_an_honest_witness_finds_nothing(tmp_path: Path) -> None:
    """The witness holds a prefix of the guard's history, then the same checkpoint: no split view."""
    from fiat.tlog.witness import ADD_CHECKPOINT_PATH, AddCheckpointRequest

    base = World(witnesses=0, quorum=0)
    with fork(tmp_path, base, 5, 0, 0) as (forked, tiles):
        prefix = forked.checkpoint_b
        grown = forked.grow("b", [b"more", b"entries", b"here"])
        w = witnesses.start_witness(tmp_path, "witness.test/honest", base.signer.verifier.encode())
        monitor = None
        try:
            r = httpx.post(
                w.url + ADD_CHECKPOINT_PATH, content=AddCheckpointRequest(0, (), prefix.note_bytes).encode(), timeout=10
            )
            assert r.status_code == 200, (r.status_code, r.text)
            base.external.append(witness_key(w.vkey, w.url))
            base.root = base.make_root()
            monitor = TrustMonitor(tiles.url, base.root)
            monitor.proof_dir = tmp_path / "home" / "split-views"
            monitor.accept(base.state(grown.note_bytes))
            fetcher = HttpFetcher(tiles.url + "/log")
            try:
                with httpx.Client(timeout=5) as client:
                    assert monitor.gossip_once("witness.test/honest", w.url, client, fetcher) == "consistent"
                    proof = forked.b.consistency_proof(prefix.size, grown.size)
                    extend = AddCheckpointRequest(prefix.size, tuple(proof), grown.note_bytes).encode()
                    assert client.post(w.url + ADD_CHECKPOINT_PATH, content=extend).status_code == 200
                    assert monitor.gossip_once("witness.test/honest", w.url, client, fetcher) == "consistent"
            finally:
                fetcher.close()
            assert monitor.snapshot().split_view is None
            assert not (tmp_path / "home" / "split-views").exists()
        finally:
            w.stop()


# -- fiat run: a real guard, a real authority, a trust stream showing a second root ---------------------------------


class _TwoRootsProxy(BaseHTTPRequestHandler):
    """In front of a real ``fiat serve``: passes every request through, except the trust stream,
    which it serves itself: states signed with the home's real authority key, embedding the real
    checkpoint until ``fork`` is set, then the last one shown with another root, signed with
    the home's real log key (what a log operator showing two histories would sign)."""

    upstream = ""
    home = Path()
    fork = threading.Event()
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            if self.path.split("?")[0] == "/v1/trust/stream":
                self._stream()
                return
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "content-length")}
            r = httpx.request(self.command, self.upstream + self.path, headers=headers, content=body, timeout=30)
            self.send_response(r.status_code)
            for k, v in r.headers.items():
                if k.lower() not in ("connection", "content-length", "transfer-encoding", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self) -> None:
        import jwt

        from fiat.config import load_config
        from fiat.formats import jws
        from fiat.home import keyring, log_signer
        from fiat.tlog.checkpoint import Checkpoint, sign_checkpoint
        from fiat.verify.trust_state import TRUST_STATE_TYP

        cfg = load_config(self.home, require=True)
        rec, key = keyring(cfg).signing_key("authority")
        base = dict(jws.parse(httpx.get(self.upstream + "/v1/trust/state", timeout=5).json()["state"]).claims)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        epoch = int(base.get("epoch", 0))
        real = ""
        while True:
            if not self.fork.is_set():
                real = embedded = httpx.get(self.upstream + "/log/checkpoint", timeout=5).text
            else:  # the last checkpoint the guard was shown, with another root: two roots for one size
                lines = real.split("\n")
                other = bytes(b ^ 0xFF for b in base64.b64decode(lines[2]))
                cp = Checkpoint(lines[0], int(lines[1]), other)
                embedded = sign_checkpoint(cp, log_signer(cfg)).note_bytes.decode()
            now, epoch = time.time(), epoch + 1
            claims = {**base, "iat": int(now), "time": round(now, 3), "epoch": epoch, "checkpoint": embedded}
            token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": rec.kid, "typ": TRUST_STATE_TYP})
            try:
                self.wfile.write(f"event: trust-state\ndata: {token}\n\n".encode())
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            time.sleep(0.1)


def test_fiat_run_halted_by_a_split_view_names_its_proof(tmp_path: Path) -> None:
    """A real ``fiat run`` whose trust stream shows the log's checkpoint with a second root halts at
    log-continuity; its result names the proof under ``<home>/split-views`` (0600), which proves it."""
    import subprocess

    from fiat.config import load_config
    from fiat.home import trust_root
    from support.processes import FIAT, FiatServer, cli_env, fiat_text, free_port, ok

    home = tmp_path / "home"
    ok(fiat_text("init", "--home", home, "--json"))
    examples = Path(fiat.__file__).resolve().parent / "examples" / "policies"
    ok(fiat_text("policy", "publish", examples, "--home", home, "--json"))
    port = free_port()
    server = FiatServer(home, env={"FIAT_SERVER_PUBLIC_URL": f"http://127.0.0.1:{port}"}).start()
    handler = type("Handler", (_TwoRootsProxy,), {"upstream": server.url, "home": home, "fork": threading.Event()})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    started = tmp_path / "started"
    sleeper = "import sys, time; open(sys.argv[1], 'w').close(); time.sleep(60)"
    args = [
        *(*FIAT, "run", "--json", "--home", str(home), "--url", f"http://127.0.0.1:{port}"),
        *("--principal", PRINCIPAL, "--action", ACTION, "--resource", RESOURCE),
        *("--", sys.executable, "-c", sleeper, str(started)),
    ]
    env = cli_env(FIAT_RUNTIME_HEARTBEAT_MS="100", FIAT_RUNTIME_CONTAINMENT="process", FIAT_RUNTIME_HALT_GRACE_MS="500")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.5)  # a few states with the real checkpoint: the guard has proven the last one
        handler.fork.set()
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        httpd.shutdown()
        httpd.server_close()
        server.stop()
    result = json.loads(out)
    assert result["exitCode"] == 124 and "log-continuity" in result["reason"], result
    assert result["splitViewProof"], result
    path = Path(result["splitViewProof"])
    assert path.parent == home / "split-views" and f"fiat verify {path}" in result["reason"], result
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    root = trust_root(load_config(home, require=True))
    proven = split_view.verify(split_view.SplitViewProof.parse(path.read_bytes()), root.log_verifiers())
    assert proven.first.size == proven.second.size and "two roots" in proven.summary
