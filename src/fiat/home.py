"""A Fiat home on disk: ``fiat.toml``, its keys, admin token and trust root, and ``init_home``.

Building the objects that run over a home (stores, log, evidence, authority) is
:mod:`fiat.wiring`'s job; ``init_home`` asks it for the empty log.

Every file Fiat writes in a home is 0600 and every directory 0700, whatever the umask:
the home holds private keys, the admin token and the database. ``init_home`` tightens
what an older Fiat left looser (``fiat.toml``, the directories; the database tightens
itself when opened), silently. A private key or admin token readable by others is
refused instead (it may have leaked): the message says to ``chmod 600`` it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fiat.config import CONFIG_NAME, Config, load_config, render_default_config, resolve_home
from fiat.errors import AdminTokenError, ConfigError, MalformedError
from fiat.keys.admin_token import ADMIN_TOKEN_FILE, read_admin_token, write_admin_token
from fiat.keys.keyring import KeyRing, now_second
from fiat.keys.pem import ensure_private_key
from fiat.tlog.note import Signer, Verifier, check_key_name
from fiat.verify.trust_root import TrustRoot
from fiat.wiring import open_log


@dataclass(frozen=True)
class InitReport:
    home: Path
    created: tuple[str, ...]
    kept: tuple[str, ...]
    vkey: str


def init_home(home: str | Path | None, origin: str | None = None) -> InitReport:
    """Create the home, its ``fiat.toml``, its keys and an empty log. Idempotent; never replaces a key."""
    root = resolve_home(home)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    created: list[str] = []
    kept: list[str] = []
    cfg_path = root / CONFIG_NAME
    if cfg_path.exists():
        os.chmod(cfg_path, 0o600)
        kept.append(CONFIG_NAME)
    else:
        defaults = load_config(root)  # defaults + environment, validated
        chosen = origin or defaults.log.origin
        try:
            check_key_name(chosen)
        except MalformedError as exc:
            raise ConfigError(f"origin {chosen!r} is not a valid log origin: {exc.reason}") from exc
        fd = os.open(cfg_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render_default_config(chosen))
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
    token = f"keys/{ADMIN_TOKEN_FILE}"
    if not (cfg.keys_dir / ADMIN_TOKEN_FILE).exists():
        write_admin_token(cfg.keys_dir)
        created.append(token)
    else:
        try:
            read_admin_token(cfg.keys_dir)
            kept.append(token)
        except AdminTokenError:  # empty or weak: it cannot be used, so a fresh one replaces it
            write_admin_token(cfg.keys_dir)
            created.append(f"{token} (replaced: the old one was unusable)")
    log = open_log(cfg)
    log.close()
    return InitReport(root, tuple(created), tuple(kept), log.verifier.encode())


def log_keys(cfg: Config) -> tuple[Signer, list[Verifier]]:
    """The active log key (the keyring's, after a rotation) and the retired log keys, which
    still verify the checkpoints they signed. One read of the keyring, one of the key file."""
    return keyring(cfg).log_keys(cfg.log.origin, cfg.log_key_path)


def log_signer(cfg: Config) -> Signer:
    return log_keys(cfg)[0]


def keyring(cfg: Config) -> KeyRing:
    return KeyRing(cfg.keys_dir)


def trust_root(cfg: Config, witness_quorum: int | None = None) -> TrustRoot:
    """The home's trust root; its witness quorum is ``log.witness_quorum`` unless ``witness_quorum`` overrides it."""
    quorum = cfg.log.witness_quorum if witness_quorum is None else witness_quorum
    return keyring(cfg).trust_root(cfg.authority.issuer, cfg.authority.audience, cfg.log.origin, quorum)
