"""The logs a witness cosigns: its configuration file, in the C2SP tlog-policy style.

One log per line, as tlog-policy §Defining a log writes it::

    log <vkey> [<url>]

* ``<vkey>`` is the log's verifier key (signed-note §Verifier keys, Ed25519, type 0x01); its key
  name is the log's origin (tlog-policy: "The log's vkey includes a 'key name'. This name MUST
  correspond to the log's origin line"). Several lines may name one origin (a rotated log key):
  the witness trusts each of them for that origin.
* ``<url>`` (optional) is where the log is, for the operator; the witness never fetches it.
* Items are separated by spaces and tabs only; leading and trailing whitespace is allowed;
  empty lines and lines starting with ``#`` (after optional whitespace) are ignored
  (tlog-policy §Structure). "Duplicate logs, i.e., multiple log lines with the same public key,
  are not allowed" (tlog-policy §Defining a log).

Any other line is an error naming the file and line. No I/O except :func:`read_logs`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fiat.errors import ConfigError, MalformedError
from fiat.tlog import note

_WS = re.compile(r"[ \t]+")
HEADER = (
    "# The logs this witness cosigns (C2SP tlog-witness), one per line in the C2SP tlog-policy style:\n"
    "#   log <vkey> [<url>]\n"
    "# <vkey> is the log's verifier key (`fiat log vkey` prints it); its key name is the log's origin.\n"
    "# Add one with `fiat witness add-log --vkey VKEY [--url URL]`.\n"
)


@dataclass(frozen=True)
class WatchedLog:
    """One ``log`` line: a log key the witness trusts for its origin, and the optional URL."""

    verifier: note.Verifier
    url: str | None = None
    line: int = 0  # where it was defined (1-based), for messages

    @property
    def origin(self) -> str:
        return self.verifier.name

    def render(self) -> str:
        return f"log {self.verifier.encode()}" + (f" {self.url}" if self.url else "")


def check_url(url: str, where: str) -> str:
    """A log or witness URL: ``http://`` or ``https://`` with a host, no whitespace."""
    if not re.fullmatch(r"https?://[^\s/?#]+[^\s]*", url):
        raise ConfigError(f"{where}: {url!r} is not an http:// or https:// URL")
    return url


def parse_logs(text: str, source: str = "witness logs") -> list[WatchedLog]:
    """Parse a logs file; a :class:`ConfigError` names ``source``, the line number and what is wrong."""
    out: list[WatchedLog] = []
    seen: dict[bytes, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip(" \t\r")
        if not line or line.startswith("#"):
            continue
        where = f"{source}:{number}"
        items = _WS.split(line)
        if items[0] != "log":
            raise ConfigError(
                f"{where}: {items[0]!r} lines do not belong in a witness's logs file; "
                "write one `log <vkey> [<url>]` line per log"
            )
        if len(items) not in (2, 3):
            raise ConfigError(f"{where}: expected `log <vkey> [<url>]`, got {len(items) - 1} items after `log`")
        try:
            verifier = note.Verifier.parse(items[1])
        except MalformedError as exc:
            raise ConfigError(
                f"{where}: {exc.reason}; a log's vkey is what `fiat log vkey` prints "
                "(<origin>+<hex key ID>+<base64 Ed25519 key>)"
            ) from None
        url = check_url(items[2], where) if len(items) == 3 else None
        if verifier.public_key in seen:
            raise ConfigError(
                f"{where}: the same log key as line {seen[verifier.public_key]} (duplicate logs are not allowed)"
            )
        seen[verifier.public_key] = number
        out.append(WatchedLog(verifier, url, number))
    return out


def by_origin(logs: Sequence[WatchedLog]) -> dict[str, list[note.Verifier]]:
    """Origin → the log keys trusted for it."""
    out: dict[str, list[note.Verifier]] = {}
    for entry in logs:
        out.setdefault(entry.origin, []).append(entry.verifier)
    return out


def read_logs(path: Path) -> list[WatchedLog]:
    """Read and parse the logs file (absent: no logs yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the witness logs file {path}: {exc}") from None
    return parse_logs(text, str(path))


def render_logs(logs: Sequence[WatchedLog], header: str = HEADER) -> str:
    return header + "".join(entry.render() + "\n" for entry in logs)


class LogsFile:
    """The logs file, re-read when it changes (``fiat witness add-log`` takes effect without a
    restart). A change that does not parse keeps the logs of the last good read and is reported
    through ``on_error`` once per change."""

    def __init__(self, path: Path, on_error: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.on_error = on_error
        self._stamp: tuple[int, int] | None = None
        self._logs: dict[str, list[note.Verifier]] = {}
        self._entries: list[WatchedLog] = []
        self._lock = threading.Lock()
        self._entries = read_logs(path)  # the first read must succeed: a bad file stops the server
        self._logs = by_origin(self._entries)
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def entries(self) -> list[WatchedLog]:
        self()
        return list(self._entries)

    def __call__(self) -> Mapping[str, Sequence[note.Verifier]]:
        stamp = self._stat()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._stamp = stamp
                    try:
                        self._entries = read_logs(self.path)
                        self._logs = by_origin(self._entries)
                    except ConfigError as exc:
                        if self.on_error is not None:
                            self.on_error(f"{exc}; still using the logs read before")
        return self._logs
