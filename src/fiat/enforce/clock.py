"""The guard's clock: wall time that advances only with the monotonic clock once anchored.

Freshness, expiry and maximum duration are enforced against signed wall times (a
permit's ``nbf``/``exp``, a trust state's ``time``), so the guard needs a wall time;
but a wall-clock step (an operator's ``date -s``, an NTP correction, an attacker with
``CAP_SYS_TIME``) must neither extend nor spuriously end an execution (issue 10,
"Time"). A :class:`SteadyClock` reads the wall clock once, when it is made (the
moment an artifact is first checked against it), and from then on reports
``wall_at_anchor + (monotonic_now - monotonic_at_anchor)``: ``CLOCK_MONOTONIC`` is
slewed by NTP like the wall clock but never stepped, so the steady time keeps pace
with real time and ignores every later step in either direction.

:meth:`SteadyClock.step` reports a step: the change of ``wall - monotonic`` since the
previous observation, when it exceeds :data:`CLOCK_STEP_THRESHOLD`; the guard records
it as a ``clock-step`` event in the receipt's verification chain and logs a warning.
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: A change of ``wall - monotonic`` larger than this between two observations (seconds) is
#: a clock step. NTP slews the two clocks together, so between heartbeats the difference moves
#: by microseconds; a second is far above that noise and far below any step that matters
#: against a staleness bound or a permit lifetime of seconds.
CLOCK_STEP_THRESHOLD = 1.0


class SteadyClock:
    """Wall time anchored once, then advanced by the monotonic clock only.

    ``wall`` and ``mono`` are injectable (tests step a fake wall clock and advance a fake
    monotonic one).
    """

    def __init__(self, wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic) -> None:
        self.wall, self.mono = wall, mono
        self._offset = wall() - mono()  # wall - monotonic at the anchor: fixed for this clock's life
        self._observed = self._offset  # wall - monotonic at the previous step() call

    def now(self) -> float:
        """The anchored wall time now (seconds since the epoch, unaffected by later steps)."""
        return self._offset + self.mono()

    def step(self) -> float | None:
        """The wall clock's step since the previous call (seconds, positive forward), or ``None``
        when ``wall - monotonic`` moved by no more than :data:`CLOCK_STEP_THRESHOLD`."""
        observed = self.wall() - self.mono()
        moved, self._observed = observed - self._observed, observed
        return moved if abs(moved) > CLOCK_STEP_THRESHOLD else None
