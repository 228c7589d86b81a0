"""The gateway's configuration: the upstream servers, per-tool resource arguments, the HTTP face.

``fiat mcp serve --config FILE`` reads a TOML file (docs/mcp.md, "Configuration")::

    [gateway]
    host = "127.0.0.1"
    port = 8760
    public_url = "https://mcp.example.com"   # the resource URL tokens must name (RFC 8707); default http://host:port
    path = "/mcp"

    [identity]                               # who the agent is: OAuth 2.1 bearer tokens ...
    issuer = "https://auth.example.com"
    jwks = "issuer-jwks.json"                # the issuer's public keys (RFC 7517), relative to this file
    principal_claim = "sub"                  # principal = "agent:<that claim>"
    # static = "agent:local-dev"             # ... or one fixed identity (trusted local set-ups only)

    [servers.desk]                           # an upstream started contained, spoken to over stdio
    command = ["python", "examples/mcp/server.py", "--root", "docs"]

    [servers.desk.tools.refund]              # Cedar's resource for this tool is Order::"<order_id>"
    resource_argument = "order_id"
    resource_type = "Order"

    [servers.wiki]                           # an upstream reached over streamable HTTP
    url = "https://wiki.internal/mcp"
    headers = { Authorization = "Bearer <the gateway's own credential for wiki>" }

The stdio face (``fiat mcp -- CMD``) builds the same :class:`GatewayConfig` from its options.
Every error names the setting (pydantic validation, then the rules below).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from fiat.errors import ConfigError

#: Between a server's name and its tool's name in a namespaced tool (``desk___refund``).
SEPARATOR = "___"
#: A server name: what may stand before ``___`` in a tool name and in ``McpServer::"<name>"``.
#: It neither contains ``___`` (checked where it is read) nor ends with ``_``: with tool names that do
#: not start with ``_`` (:data:`TOOL_NAME_START`), ``<server>___<tool>`` splits one way only, so two
#: upstreams' tools can never share a namespaced name (``a`` + ``_x`` against ``a_`` + ``x``).
SERVER_NAME = re.compile(r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9_-]{0,61}[A-Za-z0-9-])\Z")
#: An upstream's tool whose name starts with ``_`` is not proxied (it could alias another server's).
TOOL_NAME_START = "_"
_CEDAR_TYPE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*\Z")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolSettings(_Strict):
    """Where a tool's Cedar resource comes from: ``<resource_type>::"<arguments[resource_argument]>"``."""

    resource_argument: str = Field(min_length=1, max_length=128)
    resource_type: str = Field(min_length=1, max_length=128)

    @field_validator("resource_type")
    @classmethod
    def _type(cls, v: str) -> str:
        if not _CEDAR_TYPE.match(v):
            raise ValueError(f"{v!r} is not a Cedar entity type (e.g. Order or Shop::Order)")
        return v


class ServerSettings(_Strict):
    """One upstream: ``command`` (started contained, stdio) or ``url`` (streamable HTTP)."""

    command: list[str] | None = None
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    url: str | None = None
    #: Headers the gateway sends to this upstream (its own credential); never the agent's.
    headers: dict[str, str] = Field(default_factory=dict)
    #: ``auto`` (try the 2026-07-28 revision, fall back to the 2025-11-25 handshake) or ``legacy``.
    protocol: Literal["auto", "legacy"] = "auto"
    tools: dict[str, ToolSettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> ServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("set exactly one of command (a stdio server) and url (a streamable-HTTP server)")
        if self.command is not None and not self.command:
            raise ValueError("command must name the program to start")
        if self.url is not None and not re.match(r"https?://[^/\s]+", self.url):
            raise ValueError(f"url {self.url!r} must be an http:// or https:// URL")
        if self.url is not None and (self.cwd or self.env):
            raise ValueError("cwd and env apply to a command, not to a url")
        return self

    @property
    def kind(self) -> str:
        return "stdio" if self.command is not None else "http"


class IdentitySettings(_Strict):
    """The HTTP face's identity: OAuth 2.1 bearer JWTs of ``issuer`` (keys in ``jwks``), or ``static``."""

    static: str | None = None
    issuer: str | None = None
    jwks: str | None = None
    audience: str | None = None  # default: the gateway's resource URL (public_url + path)
    principal_claim: str = "sub"
    principal_prefix: str = "agent:"
    required_scopes: list[str] = Field(default_factory=list)
    algorithms: list[str] = Field(default_factory=lambda: ["EdDSA", "ES256", "RS256"])

    @model_validator(mode="after")
    def _one_kind(self) -> IdentitySettings:
        oauth = self.issuer is not None or self.jwks is not None
        if (self.static is None) == (not oauth):
            raise ValueError("set either static (one fixed principal) or issuer and jwks (OAuth bearer tokens)")
        if oauth and (self.issuer is None or self.jwks is None):
            raise ValueError("OAuth needs both issuer and jwks")
        if "none" in [a.lower() for a in self.algorithms] or any(a.startswith("HS") for a in self.algorithms):
            raise ValueError("algorithms: only asymmetric JWS algorithms are accepted (no none, no HS*)")
        return self


class FaceSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8760, ge=0, le=65535)
    public_url: str | None = None
    path: str = "/mcp"

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith("/"):
            raise ValueError("path must start with /")
        return v


class GatewayConfig(_Strict):
    gateway: FaceSettings = Field(default_factory=FaceSettings)
    identity: IdentitySettings | None = None
    servers: dict[str, ServerSettings]

    @field_validator("servers")
    @classmethod
    def _names(cls, v: dict[str, ServerSettings]) -> dict[str, ServerSettings]:
        if not v:
            raise ValueError("name at least one upstream server ([servers.NAME])")
        for name in v:
            if not SERVER_NAME.match(name) or SEPARATOR in name:
                raise ValueError(
                    f"server name {name!r}: letters, digits, - and _ (not {SEPARATOR!r}, and neither first nor "
                    "last), at most 63 characters"
                )
        return v

    def resource_url(self) -> str:
        """The gateway's resource URL (RFC 9728 ``resource``; the ``aud`` its tokens must carry)."""
        face = self.gateway
        base = face.public_url.rstrip("/") if face.public_url else f"http://{face.host}:{face.port}"
        return base + face.path


def one_server(name: str, **server: Any) -> GatewayConfig:
    """One upstream (``command=[...]`` or ``url=...``, optional ``tools``), as the stdio face configures it."""
    return parse({"servers": {name: server}}, "the gateway")


def _where(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())


def parse(data: dict[str, Any], source: str) -> GatewayConfig:
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_where(exc)}") from None


def load(path: Path) -> GatewayConfig:
    """Read and validate a gateway configuration file; relative paths in it are relative to it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the gateway configuration {path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    cfg = parse(data, str(path))
    if cfg.identity is not None and cfg.identity.jwks is not None:
        jwks = Path(cfg.identity.jwks)
        if not jwks.is_absolute():
            identity = cfg.identity.model_copy(update={"jwks": str(path.parent / jwks)})
            cfg = cfg.model_copy(update={"identity": identity})
    return cfg
