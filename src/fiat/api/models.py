"""The request bodies on the wire: strict (no coercion, no unknown fields), bounded in size.

Field names are the wire's (camelCase), so they are the OpenAPI schema's too.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# No docstrings on the models: they would become descriptions in the OpenAPI document.


class ScopePair(Strict):
    action: str = Field(min_length=1, max_length=1024)
    resource: str = Field(min_length=1, max_length=1024)


class AuthorizeBody(Strict):  # POST /v1/authorize: the action request, the runtime key, its Evidence
    principal: str = Field(min_length=1, max_length=1024)
    action: str = Field(min_length=1, max_length=1024)
    resource: str = Field(min_length=1, max_length=1024)
    context: dict[str, Any] = Field(default_factory=dict)
    parent: str | None = Field(default=None, max_length=256)
    runtimeKid: str = Field(min_length=1, max_length=128)
    evidence: dict[str, Any] | None = None
    approvalId: str | None = Field(default=None, max_length=128)
    renews: str | None = Field(default=None, max_length=256)
    #: What the permit's descendants may be permitted (docs/formats.md, "Delegation").
    scope: list[ScopePair] | None = Field(default=None, max_length=256)


class Candidate(Strict):
    action: str = Field(min_length=1, max_length=1024)
    resource: str = Field(min_length=1, max_length=1024)


#: The most (action, resource) candidates one ``POST /v1/authorize/permissible`` asks about.
MAX_CANDIDATES = 1024


class PermissibleBody(Strict):  # POST /v1/authorize/permissible: which candidates could ever be permitted
    principal: str = Field(min_length=1, max_length=1024)
    candidates: list[Candidate] = Field(max_length=MAX_CANDIDATES)


class ApprovalBody(Strict):  # POST /v1/approvals/{id}: an approval/v1 statement in a DSSE envelope
    envelope: dict[str, Any]


class ReceiptBody(Strict):  # POST /v1/receipts: a receipt/v1 statement in DSSE, signed by the permit's cnf key
    envelope: dict[str, Any]


class RevocationBody(Strict):
    kind: str = Field(pattern="^(permit|principal|runtime)$")
    target: str = Field(min_length=1, max_length=1024)
    reason: str = Field(min_length=1, max_length=2048)


class EnrollmentBody(Strict):
    role: str = Field(pattern="^(runtime|approver|witness)$")
    name: str = Field(min_length=1, max_length=256)
    publicKey: str = Field(min_length=43, max_length=43)
    #: An approver key's approver groups (``@approval("ops")`` needs one of group ``ops``).
    groups: list[str] | None = Field(default=None, max_length=32)
    #: Who holds an approver key, as a principal (``user:alice``; default ``user:<name>``).
    identity: str | None = Field(default=None, min_length=1, max_length=1024)
    #: A witness key's C2SP tlog-witness URL prefix (the log submits its checkpoints there).
    url: str | None = Field(default=None, min_length=1, max_length=2048)


class PolicyBody(Strict):
    files: dict[str, str]  # file name -> base64 content
