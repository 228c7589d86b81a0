"""Every exception Fiat raises on purpose.

One module, one hierarchy: callers catch :class:`FiatError` for "anything Fiat
refused", or a specific subclass when they care which rule failed. Each
message says what was wrong and, where there is one, what to do next.

Verification failures carry the name of the rule (``step``) that rejected the
input, so a CLI can print "failed at <step>" and a test can assert which rule
caught a tamper.
"""

from __future__ import annotations


class FiatError(Exception):
    """Base class of all errors raised by Fiat."""


class ConfigError(FiatError):
    """The home directory or ``fiat.toml`` is missing, unreadable or invalid."""


class AdminTokenError(ConfigError):
    """The admin token file is missing, empty or too weak to be the admin credential."""


class KeyFileError(FiatError):
    """A key file is missing, malformed, has unsafe permissions or the wrong passphrase."""


class StorageError(FiatError):
    """The storage backend failed or holds data that contradicts itself."""


class VerificationError(FiatError):
    """Something did not verify. ``step`` names the rule that rejected it."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.reason = message


# -- transparency log --------------------------------------------------------


class EntryTooLargeError(FiatError):
    """A log entry exceeds the 65,535-byte limit of C2SP tlog-tiles entry bundles."""


class LogClosedError(FiatError):
    """An append was attempted on a log whose sequencer has stopped."""


class MalformedError(FiatError):
    """Input bytes do not parse as the format they claim to be.

    ``what`` is the format ("signed note", "checkpoint", "tile path", ...).
    """

    def __init__(self, what: str, message: str) -> None:
        super().__init__(f"malformed {what}: {message}")
        self.what = what
        self.reason = message


class NoteVerificationError(VerificationError):
    """A signed note is not signed by any trusted key, or a trusted signature is bad."""


class ProofError(VerificationError):
    """An inclusion or consistency proof does not verify."""


class InconsistentTreeError(VerificationError):
    """Two checkpoints of the same log cannot both be true (a split view or a rollback)."""


class AuditError(FiatError):
    """A remote log could not be audited (unreachable, or served something invalid)."""


# -- refusals ------------------------------------------------------------------
#
# What kind of refusal an error is, independent of the component that raised it.
# Concrete errors mix one of these into their component's base class, and the
# HTTP API maps them to a status by type (``fiat.api.problems``), never by text.


class NotFoundError(FiatError):
    """What the request names (an approval, a permit) does not exist here."""


class ConflictError(FiatError):
    """What the request names exists, but its state forbids the change (already decided, already used)."""


class BadSignatureError(FiatError):
    """A statement is not signed by a key entitled to sign it: an authentication failure."""


# -- the authority -------------------------------------------------------------


class AuthorizationError(FiatError):
    """A request the authority refuses before deciding (bad input, unknown runtime)."""


class MalformedRequestError(AuthorizationError):
    """The request itself is malformed (not canonicalizable, not a valid name, not a valid choice)."""


class AlreadyConsumedError(AuthorizationError, ConflictError):
    """A single-use permit was already used."""


class AlreadyRenewedError(AuthorizationError, ConflictError):
    """The permit a renewal names already has its one successor (docs/formats.md, "Renewal")."""


class ApprovalError(FiatError):
    """An approval that cannot be accepted (unknown, expired, already decided, wrongly signed)."""


class UnknownApprovalError(ApprovalError, NotFoundError):
    """No approval has this id."""


class AlreadyDecidedError(ApprovalError, ConflictError):
    """The approval is no longer pending (approved, denied, expired, used, or decided concurrently)."""


class ApproverSignatureError(ApprovalError, BadSignatureError):
    """An approval is not signed by an enrolled, active approver, or not by the approver it names."""


class ApproverGroupError(ApprovalError):
    """A well-signed approval by an approver key that is not of the group the request needs."""


class SelfApprovalError(ApprovalError):
    """A well-signed approval by the approver who is the principal that asked for the action."""
