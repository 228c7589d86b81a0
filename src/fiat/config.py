"""The home directory and ``fiat.toml``, with environment-variable overrides.

Resolution of the home: ``--home DIR``, else ``$FIAT_HOME``, else ``./.fiat``.

Every setting ``[section] key`` can be overridden by ``FIAT_<SECTION>_<KEY>``
(upper case), e.g. ``FIAT_SERVER_PORT=9000`` or ``FIAT_LOG_ORIGIN=example.com/log``.
Precedence: environment, then ``fiat.toml``, then the built-in default.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import tomllib
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fiat.errors import ConfigError, MalformedError
from fiat.tlog.note import check_key_name

HOME_ENV = "FIAT_HOME"
DEFAULT_HOME = ".fiat"
CONFIG_NAME = "fiat.toml"

#: (section, key) -> (type, default, help). The single source of truth for settings.
SETTINGS: dict[tuple[str, str], tuple[type, Any, str]] = {
    ("log", "origin"): (str, "fiat.local/log", "The log's identity: checkpoint origin and signing key name."),
    ("log", "batch_max_entries"): (int, 4096, "Most entries sequenced into one durable batch."),
    ("log", "batch_linger_ms"): (
        float,
        0.0,
        "How long the sequencer waits after the first queued entry for more (0: group commit — entries "
        "queued while a batch commits form the next batch).",
    ),
    ("log", "witness_quorum"): (
        int,
        0,
        "Witness cosignatures (C2SP tlog-cosignature) every checkpoint needs: the trust root states it, "
        "`fiat verify` and guards with runtime.require_witnessed insist on it. The log submits each new "
        "checkpoint to every witness key with a URL (`fiat keys add --role witness --url`).",
    ),
    ("log", "witness_timeout_ms"): (
        int,
        2000,
        "How long one submission to a witness may take (C2SP tlog-witness add-checkpoint), retries included.",
    ),
    ("log", "witness_interval_ms"): (
        int,
        1000,
        "How often the latest checkpoint is resubmitted to the witnesses when the log does not grow, so "
        "that its cosignatures stay fresh.",
    ),
    ("authority", "issuer"): (str, "fiat.local", "Permit issuer (iss); the trust root names it."),
    ("authority", "audience"): (str, "fiat-runtime", "Permit audience (aud): the runtime guards that accept permits."),
    ("authority", "trust_interval_ms"): (int, 1000, "How often the signed trust state is refreshed and pushed."),
    ("authority", "approval_timeout_s"): (int, 300, "A pending approval not decided within this long is denied."),
    ("authority", "policy_dir"): (str, "", "Policy bundle published at `fiat serve` start when it changed (optional)."),
    ("runtime", "name"): (str, "", "This runtime node's name (default: the host name)."),
    ("runtime", "heartbeat_ms"): (int, 250, "How often a running guard re-verifies (a permit may ask for less)."),
    ("runtime", "staleness_ms"): (int, 3000, "A guard halts when the newest signed trust state is older than this."),
    ("runtime", "require_witnessed"): (
        bool,
        False,
        "Accept only checkpoints cosigned by the trust root's witness quorum within runtime.witness_freshness_ms; "
        "a guard halts (fail closed) when it cannot get one.",
    ),
    ("runtime", "witness_freshness_ms"): (
        int,
        10000,
        "With runtime.require_witnessed: how old the quorum's newest cosignatures may be (by their timestamps).",
    ),
    ("runtime", "gossip_interval_ms"): (
        int,
        5000,
        "How often a guard compares its view of the log with each witness's latest cosigned checkpoint "
        "(the trust root's witness URLs; C2SP tlog-witness monitoring); 0: never.",
    ),
    ("runtime", "halt_grace_ms"): (int, 2000, "Between SIGTERM and SIGKILL when a guard halts an action."),
    ("runtime", "approval_wait_s"): (float, 300.0, "How long `fiat run` waits for a human approval."),
    ("runtime", "receipt_upload_s"): (
        float,
        2.0,
        "How long a run, at its end, tries to upload its spooled receipt (retries with backoff) "
        "before it exits and leaves the receipt in the spool.",
    ),
    ("runtime", "files"): (list, [], "Files and globs whose contents are part of the measured environment."),
    ("runtime", "env_allowlist"): (list, ["PATH"], "Environment variables whose values are measured."),
    ("runtime", "containment"): (
        str,
        "namespace",
        "How a governed command is contained: namespace (bubblewrap PID namespace, the home hidden) or "
        "process (process group, subreaper and parent-death signal; weaker).",
    ),
    ("runtime", "bwrap_path"): (str, "bwrap", "The bubblewrap binary that namespace containment runs."),
    ("runtime", "hidden_paths"): (list, [], "Paths covered by an empty tmpfs inside the sandbox (besides the home)."),
    ("runtime", "readonly_paths"): (list, [], "Paths bound read-only inside the sandbox."),
    ("mcp", "approval_wait_s"): (
        float,
        0.0,
        "How long the MCP gateway holds a tool call that needs a human approval (0: answer at once with "
        "a tool error naming the approval; the identical call, retried once approved, redeems it).",
    ),
    ("mcp", "call_timeout_s"): (float, 300.0, "The longest the MCP gateway waits for an upstream's tool result."),
    ("mcp", "receipts"): (
        str,
        "logged",
        "When the agent gets a tool call's result: logged (after its signed receipt is in the log, or "
        "spooled if the authority cannot take it within runtime.receipt_upload_s) or spooled (once the "
        "receipt is signed and durably spooled; it is uploaded right after, off the call's path).",
    ),
    ("storage", "backend"): (str, "sqlite", "Storage backend: sqlite."),
    ("storage", "path"): (str, "fiat.db", "Database file; relative paths are inside the home."),
    ("storage", "synchronous"): (
        str,
        "FULL",
        "FULL: acknowledged entries are on disk. NORMAL: survive a process crash but not a power loss.",
    ),
    ("storage", "busy_timeout_ms"): (int, 5000, "How long a write waits for another writer before failing (closed)."),
    ("server", "host"): (str, "127.0.0.1", "Address `fiat log serve` listens on."),
    ("server", "port"): (int, 8750, "TCP port `fiat log serve` listens on."),
    ("server", "drain_s"): (
        float,
        10.0,
        "On SIGTERM/SIGINT, how long the server drains (no new permits; receipts still accepted) before it exits.",
    ),
    ("server", "public_url"): (
        str,
        "",
        "The authority's URL as its clients use it; DPoP proofs must name it as htu (RFC 9449). "
        "Empty: http://server.host:server.port.",
    ),
    ("server", "trusted_proxies"): (
        list,
        [],
        "Reverse proxies (IP addresses or CIDR networks) whose X-Forwarded-For/-Proto headers are honoured; "
        "empty: none are.",
    ),
    ("server", "tls_cert"): (
        str,
        "",
        "PEM certificate chain `fiat serve` and `fiat log serve` serve HTTPS with (with tls_key; relative "
        "paths are in the home). Empty: plain HTTP, for a loopback or a TLS-terminating proxy only.",
    ),
    ("server", "tls_key"): (str, "", "PEM private key of server.tls_cert (relative paths are inside the home)."),
    ("server", "tls_ca"): (
        str,
        "",
        "PEM CA bundle that clients (`fiat run`, the CLI) verify an https:// authority with "
        "(relative paths are inside the home). Empty: the system trust store.",
    ),
    ("witness", "name"): (
        str,
        "",
        "A witness home (`fiat witness init`): the witness's name, its cosignatures' key name "
        "(a schema-less URL, e.g. witness.example/w1).",
    ),
    ("witness", "host"): (str, "127.0.0.1", "Address `fiat witness serve` listens on."),
    ("witness", "port"): (int, 8760, "TCP port `fiat witness serve` listens on."),
    ("witness", "logs"): (
        str,
        "witness-logs.txt",
        "The logs this witness cosigns, one `log <vkey> [<url>]` line each (C2SP tlog-policy style); "
        "relative paths are inside the home.",
    ),
    ("witness", "state"): (
        str,
        "witness.db",
        "The witness's durable state (latest cosigned checkpoint per log, refused checkpoints); "
        "relative paths are inside the home.",
    ),
    ("witness", "mldsa"): (
        bool,
        True,
        "Also cosign with ML-DSA-44 (C2SP tlog-cosignature, type 0x06), as the spec recommends.",
    ),
    ("ui", "demo_controls"): (
        bool,
        False,
        "Let anyone who reaches the server launch the demo's scenarios and revoke the runs it launched "
        "(/ui/demo) without the admin token. For a demo home only (`fiat demo` sets it for its own).",
    ),
}


def resolve_home(home: str | Path | None) -> Path:
    if home is not None and str(home) != "":
        return Path(home).expanduser()
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path(DEFAULT_HOME)


@dataclass(frozen=True)
class LogSettings:
    origin: str
    batch_max_entries: int
    batch_linger_ms: float
    witness_quorum: int = 0
    witness_timeout_ms: int = 2000
    witness_interval_ms: int = 1000


@dataclass(frozen=True)
class AuthoritySettings:
    issuer: str
    audience: str
    trust_interval_ms: int
    approval_timeout_s: int
    policy_dir: str


@dataclass(frozen=True)
class RuntimeSettings:
    name: str
    heartbeat_ms: int
    staleness_ms: int
    require_witnessed: bool
    witness_freshness_ms: int
    gossip_interval_ms: int
    halt_grace_ms: int
    approval_wait_s: float
    receipt_upload_s: float
    files: list[str]
    env_allowlist: list[str]
    containment: str
    bwrap_path: str
    hidden_paths: list[str]
    readonly_paths: list[str]


@dataclass(frozen=True)
class McpSettings:
    approval_wait_s: float
    call_timeout_s: float
    receipts: str


@dataclass(frozen=True)
class StorageSettings:
    backend: str
    path: str
    synchronous: str
    busy_timeout_ms: int


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    drain_s: float
    public_url: str
    trusted_proxies: list[str]
    tls_cert: str
    tls_key: str
    tls_ca: str


@dataclass(frozen=True)
class WitnessSettings:
    name: str
    host: str
    port: int
    logs: str
    state: str
    mldsa: bool


@dataclass(frozen=True)
class UiSettings:
    demo_controls: bool


@dataclass(frozen=True)
class Config:
    home: Path
    log: LogSettings
    authority: AuthoritySettings
    runtime: RuntimeSettings
    storage: StorageSettings
    server: ServerSettings
    mcp: McpSettings
    ui: UiSettings = UiSettings(demo_controls=False)
    witness: WitnessSettings = WitnessSettings("", "127.0.0.1", 8760, "witness-logs.txt", "witness.db", True)
    sources: dict[str, str] = field(default_factory=dict)  # "section.key" -> "default" | "fiat.toml" | "env NAME"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def log_key_path(self) -> Path:
        return self.keys_dir / "log.pem"

    @property
    def runtime_name(self) -> str:
        return self.runtime.name or socket.gethostname() or "runtime"

    @property
    def database_path(self) -> Path:
        p = Path(self.storage.path).expanduser()
        return p if p.is_absolute() else self.home / p

    @property
    def audit_dir(self) -> Path:
        return self.home / "audit"

    def home_path(self, value: str) -> Path | None:
        """A path setting: None when empty; a relative path is inside the home."""
        if not value:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.home / p

    @property
    def tls(self) -> tuple[Path, Path] | None:
        """``server.tls_cert`` and ``server.tls_key`` (None: ``fiat serve`` serves plain HTTP)."""
        cert, key = self.home_path(self.server.tls_cert), self.home_path(self.server.tls_key)
        return None if cert is None or key is None else (cert, key)

    @property
    def public_url(self) -> str:
        """``server.public_url`` without a trailing slash, else ``http(s)://server.host:server.port``."""
        return public_url_for(self, self.server.host, self.server.port)


#: How a boolean setting may be spelled in the environment (TOML has its own true/false).
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(value: Any, typ: type, where: str) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ is list:
        if isinstance(value, str):  # environment: comma-separated
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return list(value)
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def load_config(home: str | Path | None = None, *, require: bool = False) -> Config:
    """Read ``fiat.toml`` from the home (if present) and apply environment overrides."""
    root = resolve_home(home)
    path = root / CONFIG_NAME
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    elif require:
        raise ConfigError(f"no Fiat home at {root} (no {CONFIG_NAME}); run `fiat init --home {root}` first")
    known_sections = {s for s, _ in SETTINGS}
    for section, body in data.items():
        if section not in known_sections or not isinstance(body, dict):
            raise ConfigError(f"{path}: unknown section [{section}] (known: {', '.join(sorted(known_sections))})")
        for key in body:
            if (section, key) not in SETTINGS:
                raise ConfigError(f"{path}: unknown setting {section}.{key}")
    values: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    for (section, key), (typ, default, _help) in SETTINGS.items():
        env_name = f"FIAT_{section.upper()}_{key.upper()}"
        if env_name in os.environ:
            value, src = _coerce(os.environ[env_name], typ, f"${env_name}"), f"env {env_name}"
        elif key in data.get(section, {}):
            value, src = _coerce(data[section][key], typ, f"{path}: {section}.{key}"), CONFIG_NAME
        else:
            value, src = default, "default"
        values.setdefault(section, {})[key] = value
        sources[f"{section}.{key}"] = src
    cfg = Config(
        home=root,
        log=LogSettings(**values["log"]),
        authority=AuthoritySettings(**values["authority"]),
        runtime=RuntimeSettings(**values["runtime"]),
        storage=StorageSettings(**values["storage"]),
        server=ServerSettings(**values["server"]),
        mcp=McpSettings(**values["mcp"]),
        ui=UiSettings(**values["ui"]),
        witness=WitnessSettings(**values["witness"]),
        sources=sources,
    )
    _validate(cfg)
    from fiat import tls

    tls.use_ca_file(cfg.home_path(cfg.server.tls_ca))  # every authority client made from now on
    return cfg


#: The values of ``runtime.containment`` (:mod:`fiat.enforce.containment`).
CONTAINMENTS = ("namespace", "process")

#: The values of ``storage.backend``: one per backend ``fiat.wiring.BACKENDS`` can build.
STORAGE_BACKENDS = ("sqlite",)


def check_backend(name: str) -> None:
    """A :class:`ConfigError` naming the valid backends unless ``name`` is one."""
    if name not in STORAGE_BACKENDS:
        valid = ", ".join(repr(b) for b in STORAGE_BACKENDS)
        raise ConfigError(f"storage.backend {name!r} is not a storage backend; use one of: {valid}")


def _validate(cfg: Config) -> None:
    try:
        check_key_name(cfg.log.origin)
    except MalformedError as exc:
        raise ConfigError(f"log.origin {cfg.log.origin!r} is not a valid key name: {exc.reason}") from exc
    if cfg.log.batch_max_entries < 1:
        raise ConfigError("log.batch_max_entries must be at least 1")
    if not 0 <= cfg.log.batch_linger_ms <= 1000:
        raise ConfigError("log.batch_linger_ms must be between 0 and 1000")
    check_backend(cfg.storage.backend)
    if cfg.storage.synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError("storage.synchronous must be FULL, NORMAL or EXTRA")
    if not 50 <= cfg.authority.trust_interval_ms <= 60_000:
        raise ConfigError("authority.trust_interval_ms must be between 50 and 60000")
    if not 1 <= cfg.authority.approval_timeout_s <= 7 * 86400:
        raise ConfigError("authority.approval_timeout_s must be between 1 and 604800")
    if not 10 <= cfg.runtime.heartbeat_ms <= 60_000:
        raise ConfigError("runtime.heartbeat_ms must be between 10 and 60000")
    if not 100 <= cfg.runtime.staleness_ms <= 600_000:
        raise ConfigError("runtime.staleness_ms must be between 100 and 600000")
    if cfg.log.witness_quorum < 0:
        raise ConfigError("log.witness_quorum cannot be negative")
    if not 100 <= cfg.log.witness_timeout_ms <= 60_000:
        raise ConfigError("log.witness_timeout_ms must be between 100 and 60000")
    if not 100 <= cfg.log.witness_interval_ms <= 3_600_000:
        raise ConfigError("log.witness_interval_ms must be between 100 and 3600000")
    if not 500 <= cfg.runtime.witness_freshness_ms <= 86_400_000:
        raise ConfigError("runtime.witness_freshness_ms must be between 500 and 86400000")
    if not (cfg.runtime.gossip_interval_ms == 0 or 100 <= cfg.runtime.gossip_interval_ms <= 3_600_000):
        raise ConfigError("runtime.gossip_interval_ms must be 0 (off) or between 100 and 3600000")
    if cfg.witness.name:
        try:
            check_key_name(cfg.witness.name)
        except MalformedError as exc:
            raise ConfigError(f"witness.name {cfg.witness.name!r} is not a valid key name: {exc.reason}") from exc
    if not 0 <= cfg.witness.port <= 65535:
        raise ConfigError("witness.port must be between 0 and 65535")
    if not 0 <= cfg.runtime.halt_grace_ms <= 600_000:
        raise ConfigError("runtime.halt_grace_ms must be between 0 and 600000")
    if not 0 <= cfg.mcp.approval_wait_s <= 86400:
        raise ConfigError("mcp.approval_wait_s must be between 0 and 86400 (seconds)")
    if not 0 < cfg.mcp.call_timeout_s <= 86400:
        raise ConfigError("mcp.call_timeout_s must be more than 0 and at most 86400 (seconds)")
    if cfg.mcp.receipts not in ("logged", "spooled"):
        raise ConfigError(f"mcp.receipts must be logged or spooled, not {cfg.mcp.receipts!r}")
    if not 0 <= cfg.runtime.receipt_upload_s <= 600:
        raise ConfigError("runtime.receipt_upload_s must be between 0 and 600")
    if cfg.runtime.containment not in CONTAINMENTS:
        valid = ", ".join(repr(c) for c in CONTAINMENTS)
        raise ConfigError(f"runtime.containment {cfg.runtime.containment!r} is not a containment; use one of: {valid}")
    if not cfg.runtime.bwrap_path:
        raise ConfigError("runtime.bwrap_path must name the bubblewrap binary")
    for key in ("hidden_paths", "readonly_paths"):
        for p in getattr(cfg.runtime, key):
            if not os.path.isabs(p):
                raise ConfigError(f"runtime.{key}: {p!r} is not an absolute path")
    if not 0 <= cfg.server.port <= 65535:
        raise ConfigError("server.port must be between 0 and 65535")
    if not 0 <= cfg.server.drain_s <= 600:  # also rejects NaN
        raise ConfigError("server.drain_s must be between 0 and 600 (seconds)")
    if bool(cfg.server.tls_cert) != bool(cfg.server.tls_key):
        raise ConfigError(
            "server.tls_cert and server.tls_key go together: set both (PEM files) to serve HTTPS, or neither"
        )
    if cfg.server.public_url:
        check_public_url(cfg.server.public_url)
    for proxy in cfg.server.trusted_proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"server.trusted_proxies: {proxy!r} is not an IP address or CIDR network (e.g. 10.0.0.5 or 10.0.0.0/24)"
            ) from None


def check_public_url(url: str) -> None:
    """``server.public_url``: an absolute http(s) URL with a host, no credentials, query or fragment.

    It is what a DPoP proof's ``htu`` must name (RFC 9449 §4.3 step 9), so it may carry a path
    prefix (a proxy serving the authority under ``/fiat``) but nothing a request URI would not.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"server.public_url {url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment or "#" in url:
        raise ConfigError(f"server.public_url {url!r} must not carry credentials, a query or a fragment")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as exc:
        raise ConfigError(f"server.public_url {url!r}: {exc}") from None


def public_url_for(cfg: Config, host: str, port: int) -> str:
    """The public URL: ``server.public_url`` (no trailing slash), else ``http://host:port``
    (``https://`` when ``server.tls_cert`` is set).

    ``fiat serve`` passes the address it actually listens on (``--host``/``--port``; ``--port 0``:
    the port the OS chose), so a proof for the URL a local client uses is accepted.
    """
    if cfg.server.public_url:
        return cfg.server.public_url.rstrip("/")
    scheme = "https" if cfg.tls is not None else "http"
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def render_default_config(origin: str, sections: tuple[str, ...] | None = None) -> str:
    """The commented ``fiat.toml`` of a new home: every setting of ``sections`` at its default
    (None: every section but ``witness``, which only a witness home has: ``fiat witness init``)."""
    lines = [
        "# Fiat configuration.",
        "# Any setting can be overridden by an environment variable FIAT_<SECTION>_<KEY>,",
        "# for example FIAT_SERVER_PORT=9000.",
    ]
    section = None
    for (sec, key), (_typ, default, help_text) in SETTINGS.items():
        if (sections is None and sec == "witness") or (sections is not None and sec not in sections):
            continue
        if sec != section:
            lines += ["", f"[{sec}]"]
            section = sec
        value = origin if (sec, key) == ("log", "origin") else default
        lines.append(f"# {help_text}")
        literal = json.dumps(value) if isinstance(value, str | list | bool) else str(value)
        lines.append(f"{key} = {literal}")
    return "\n".join(lines) + "\n"


def authority_url(cfg: Config, url: str | None = None) -> str:
    """The authority's base URL: ``url`` when given, else :attr:`Config.public_url` (the URL its proofs name)."""
    return url or cfg.public_url
