"""The trust-state broadcaster behind ``GET /v1/trust/stream``."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import suppress

from fiat.authorize.authority import Authority

log = logging.getLogger("fiat.server")


class TrustBroadcaster:
    """Signs the trust state every interval, and at once on a revocation; fans it out to subscribers."""

    def __init__(self, authority: Authority, interval: float) -> None:
        self.authority = authority
        self.interval = interval
        self.epoch = 0
        self.latest: str = ""
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._wake = asyncio.Event()
        self._sign_lock = threading.Lock()

    def sign(self) -> str:
        with self._sign_lock:
            self.epoch += 1
            self.latest = self.authority.trust_state(0, self.epoch)
            return self.latest

    async def publish_now(self) -> None:
        state = await asyncio.to_thread(self.sign)
        for q in list(self._subscribers):
            if q.full():
                q.get_nowait()
            q.put_nowait(state)

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.authority.reload_keys)
                changed = await asyncio.to_thread(self.authority.reload_policy)
                await asyncio.to_thread(self.authority.expire_approvals)
                if changed:
                    log.info("policy changed; pushing the trust state")
                await self.publish_now()
            except Exception as exc:  # keep ticking; guards will see staleness if this persists
                log.error("trust state tick failed: %s", exc)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()

    def subscribe(self) -> asyncio.Queue[str]:
        q: asyncio.Queue[str] = asyncio.Queue(maxsize=4)
        if self.latest:
            q.put_nowait(self.latest)
        self._subscribers.add(q)
        return q

    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def unsubscribe(self, q: asyncio.Queue[str]) -> None:
        self._subscribers.discard(q)
