"""The live event hub behind ``GET /v1/events/stream``: what the web pages watch.

Producers publish from any thread (:meth:`EventHub.publish`); each subscriber is an
asyncio queue on the server's loop, bounded so that one slow browser never holds the
server's memory hostage: a subscriber that falls :data:`QUEUE_SIZE` events behind gets
an ``overflow`` marker and is expected to re-read what it missed (log entries carry
their index, so a page resumes with ``?after=``).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

QUEUE_SIZE = 1024
#: Live streams open at once (the pages' event stream and the demo's, together): each holds a
#: queue and costs the fan-out a step per event, so past this a new stream is refused with 503
#: and Retry-After rather than let idle connections starve the trust stream guards depend on.
MAX_SUBSCRIBERS = 256


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event: ``name`` (the SSE ``event:``), ``data`` (JSON), ``id`` (the SSE ``id:``, or None)."""

    name: str
    data: dict[str, Any]
    id: str | None = None


class EventHub:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The server's loop (called once, from the application's lifespan)."""
        self._loop = loop

    def publish(self, name: str, data: dict[str, Any], id: str | None = None) -> None:
        """Send an event to every subscriber; safe from any thread; a no-op before :meth:`bind`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        event = Event(name, data, id)
        with suppress(RuntimeError):  # the loop closed in between: nobody is listening any more
            loop.call_soon_threadsafe(self._fan_out, event)

    def _fan_out(self, event: Event) -> None:
        with self._lock:
            queues = list(self._subscribers)
        for q in queues:
            if q.full():  # a subscriber this far behind re-reads from the log
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(Event("overflow", {"reason": "the page fell behind; re-read from the last index"}))
            q.put_nowait(event)

    def subscribe(self) -> asyncio.Queue[Event]:
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE_SIZE)
        with self._lock:
            self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[Event]) -> None:
        with self._lock:
            self._subscribers.discard(q)

    def full(self) -> bool:
        """Whether :data:`MAX_SUBSCRIBERS` streams are open (a new one is to be refused)."""
        return self.subscribers >= MAX_SUBSCRIBERS

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)
