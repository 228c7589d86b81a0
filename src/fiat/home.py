"""A Fiat home: its configuration, keys and storage, opened together."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fiat.config import CONFIG_NAME, Config, load_config, render_default_config, resolve_home
from fiat.errors import ConfigError, MalformedError
from fiat.keys.keyring import KeyRing, now_second
from fiat.keys.pem import ensure_private_key, load_private_key
from fiat.persist.sqlite import SQLiteEvidenceIndex, SQLiteLogStore
from fiat.prove.evidence import EvidenceRecorder
from fiat.prove.log import TransparencyLog
from fiat.tlog.note import Signer, Verifier, check_key_name
from fiat.verify.trust_root import TrustRoot


@dataclass(frozen=True)
class InitReport:
    home: Path
    created: tuple[str, ...]
    kept: tuple[str, ...]
    vkey: str


def init_home(home: str | Path | None, origin: str | None = None) -> InitReport:
    """Create the home, its ``fiat.toml``, its keys and an empty log. Idempotent; never replaces a key."""
    root = resolve_home(home)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    created: list[str] = []
    kept: list[str] = []
    cfg_path = root / CONFIG_NAME
    if cfg_path.exists():
        kept.append(CONFIG_NAME)
    else:
        defaults = load_config(root)  # defaults + environment, validated
        chosen = origin or defaults.log.origin
        try:
            check_key_name(chosen)
        except MalformedError as exc:
            raise ConfigError(f"origin {chosen!r} is not a valid log origin: {exc.reason}") from exc
        cfg_path.write_text(render_default_config(chosen), encoding="utf-8")
        created.append(CONFIG_NAME)
    cfg = load_config(root, require=True)
    cfg.keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(cfg.keys_dir, 0o700)
    log_key, was_created = ensure_private_key(cfg.log_key_path)
    (created if was_created else kept).append(str(cfg.log_key_path.relative_to(root)))
    ring = KeyRing(cfg.keys_dir)
    ring.register("log", cfg.log.origin, log_key, cfg.log_key_path.name, now_second())
    for role, name in (("authority", cfg.authority.issuer), ("runtime", cfg.runtime_name)):
        active = [r for r in ring.active(role) if r.file is not None]
        if active:
            kept.extend(f"keys/{r.file} ({role})" for r in active)
        else:
            rec, _ = ring.create(role, name)
            created.append(f"keys/{rec.file} ({role})")
    ring.save()
    log = open_log(cfg)
    log.close()
    log.store.close()
    return InitReport(root, tuple(created), tuple(kept), log.verifier.encode())


def log_keys(cfg: Config) -> tuple[Signer, list[Verifier]]:
    """The active log key (the keyring's, after a rotation) and the retired log keys, which
    still verify the checkpoints they signed. One read of the keyring, one of the key file."""
    ring = keyring(cfg)
    active = [r for r in ring.active("log") if r.file is not None]
    path = cfg.keys_dir / active[-1].file if active and active[-1].file else cfg.log_key_path
    signer = Signer(cfg.log.origin, load_private_key(path))
    current = signer.verifier.public_key
    retired = [
        Verifier.from_public_key(cfg.log.origin, r.public_key)
        for r in ring.records
        if r.role == "log" and r.public_key != current
    ]
    return signer, retired


def log_signer(cfg: Config) -> Signer:
    return log_keys(cfg)[0]


def open_log(cfg: Config) -> TransparencyLog:
    store = SQLiteLogStore(
        cfg.database_path, synchronous=cfg.storage.synchronous, busy_timeout_ms=cfg.storage.busy_timeout_ms
    )
    try:
        signer, retired = log_keys(cfg)
        return TransparencyLog(
            store,
            signer,
            retired=retired,
            batch_max_entries=cfg.log.batch_max_entries,
            batch_linger=cfg.log.batch_linger_ms / 1000,
        )
    except BaseException:
        store.close()
        raise


def open_evidence(cfg: Config) -> EvidenceRecorder:
    log = open_log(cfg)
    assert isinstance(log.store, SQLiteLogStore)
    return EvidenceRecorder(log, SQLiteEvidenceIndex(cfg.database_path, cfg.storage.busy_timeout_ms))


def keyring(cfg: Config) -> KeyRing:
    return KeyRing(cfg.keys_dir)


def trust_root(cfg: Config, witness_quorum: int = 0) -> TrustRoot:
    return keyring(cfg).trust_root(cfg.authority.issuer, cfg.authority.audience, cfg.log.origin, witness_quorum)
