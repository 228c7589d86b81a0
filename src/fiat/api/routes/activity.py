"""``GET /v1/activity`` and ``GET /v1/events/stream``: the log as the web pages watch it (public).

* ``GET /v1/activity?after=<index>&limit=<n>`` — ``{"entries": [...], "treeSize": N}``: the
  summaries (:func:`fiat.prove.activity.describe_entry`) of the log entries after ``after``
  (default −1: from the first), at most ``limit`` (1..1000). The log itself is public
  (``/log/``, C2SP tlog-tiles): this is the same bytes decoded, never verified.
* ``GET /v1/events/stream?after=<index>`` — server-sent events (WHATWG HTML §9.2):

  - ``event: entry`` — ``id:`` the log index, ``data:`` its summary: first every entry after
    ``after`` (or after the ``Last-Event-ID`` header a reconnecting EventSource sends; a page
    that saw nothing yet asks ``after=-1``; with neither the stream starts at the log's end),
    then each new entry as the log grows (:func:`watch_log` publishes them on ``ctx.events``);
  - every other event a producer publishes on ``ctx.events`` (e.g. ``run`` from the demo),
    forwarded with its own name, data and id;
  - ``event: overflow`` — the page fell :data:`fiat.api.events.QUEUE_SIZE` events behind and
    some were dropped: it re-reads ``/v1/activity?after=`` from the last index it holds;
  - ``event: keep-alive`` (``data: {}``) every :data:`KEEP_ALIVE_S` s of silence, so a page
    can tell a quiet server from a dead connection (its stale marker, ``common.js``);
  - ``event: going-away`` (``data: {"reason": "shutdown"}``) when the server begins its
    shutdown drain (:mod:`fiat.serving`); the stream ends right after, and a page reconnects
    with backoff to the restarted server. While the server drains, a new stream is refused (503).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import StreamingResponse

from fiat.api.context import ApiContext
from fiat.api.events import Event
from fiat.api.problems import Problem, problem_responses, refuse_when_full, refuse_while_draining
from fiat.prove.activity import MAX_READ, read_activity
from fiat.prove.log import TransparencyLog

log = logging.getLogger("fiat.api")

KEEP_ALIVE_S = 10.0
#: How often :func:`watch_log` reads the log's tree size (a cheap read of the latest checkpoint).
WATCH_INTERVAL_S = 0.15
#: Replays and live reads go in pieces of at most this many entries.
CHUNK = 256
SSE_RESPONSE = {
    "description": "Server-sent events: entry (a log entry's summary, id = its index), keep-alive, overflow, "
    "going-away, and the events other producers publish (e.g. run)",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}


def _frame(event: Event) -> bytes:
    head = f"event: {event.name}\n" + (f"id: {event.id}\n" if event.id is not None else "")
    return (head + "data: " + json.dumps(event.data, separators=(",", ":")) + "\n\n").encode()


def _after(value: int | None, what: str) -> int | None:
    if value is not None and not -1 <= value < 2**63:
        raise Problem(400, "Bad Request", f"{what} must be a log index (-1 ≤ {what} < 2^63)")
    return value


async def watch_log(ctx: ApiContext, interval: float = WATCH_INTERVAL_S, wake: asyncio.Event | None = None) -> None:
    """Publish every new log entry on ``ctx.events`` as ``entry`` (id = its index), for ever.

    Started in the application's lifespan. It reads the tree size at once when ``wake`` is set
    (the log's ``on_integrated`` hook sets it after each batch this process integrates) and
    otherwise every ``interval`` s (in a worker thread: the read touches storage), and decodes
    only the entries past the last size seen, so an idle log costs one small read per tick.
    Entries appended by another process sharing the store are seen too, within ``interval``,
    since the checkpoint is read from storage.
    """
    auth = ctx.authority
    seen: int | None = None
    while True:
        try:
            size = (await asyncio.to_thread(auth.log.checkpoint)).size
            if seen is None:
                seen = size
            while seen < size:
                batch = await asyncio.to_thread(read_activity, auth.log.read_entries, size, seen - 1, CHUNK)
                if not batch:
                    break
                for summary in batch:
                    ctx.events.publish("entry", summary, id=str(summary["index"]))
                seen = batch[-1]["index"] + 1
        except asyncio.CancelledError:
            raise
        except Exception:  # a storage hiccup must not end the live stream for good
            log.exception("reading the log for the live event stream failed; retrying")
        if wake is None:
            await asyncio.sleep(interval)
        else:
            with suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), interval)
            wake.clear()


async def _replay(log_: TransparencyLog, after: int, upto: int) -> AsyncIterator[dict[str, Any]]:
    while after + 1 < upto:
        batch = await asyncio.to_thread(read_activity, log_.read_entries, upto, after, CHUNK)
        if not batch:
            return
        for summary in batch:
            yield summary
        after = batch[-1]["index"]


def install(app: FastAPI, ctx: ApiContext) -> None:
    auth, drain = ctx.authority, ctx.drain

    @app.get("/v1/activity", tags=["activity"], responses=problem_responses(400))
    def activity(after: int = -1, limit: int = 100) -> dict[str, Any]:
        """The log's entries after ``after``, decoded (not verified: ``fiat verify`` proves)."""
        _after(after, "after")
        if not 1 <= limit <= MAX_READ:
            raise Problem(400, "Bad Request", f"limit must be 1..{MAX_READ}")
        size = auth.log.checkpoint().size
        return {"entries": read_activity(auth.log.read_entries, size, after, limit), "treeSize": size}

    @app.get(
        "/v1/events/stream",
        tags=["activity"],
        response_class=StreamingResponse,
        responses={200: SSE_RESPONSE, **problem_responses(400, 503)},
    )
    async def events_stream(
        request: Request, after: int | None = None, last_event_id: str | None = Header(default=None)
    ) -> StreamingResponse:
        refuse_while_draining(drain, "no new event streams are opened")
        refuse_when_full(ctx.events)
        start = _after(after, "after")
        if start is None and last_event_id is not None:  # a reconnecting EventSource resumes here
            try:
                start = _after(int(last_event_id), "Last-Event-ID")
            except ValueError:
                raise Problem(400, "Bad Request", "Last-Event-ID must be a log index") from None

        async def events() -> AsyncIterator[bytes]:
            q = ctx.events.subscribe()  # before the replay's end is read: nothing falls in between
            drain.streams += 1
            try:
                size = (await asyncio.to_thread(auth.log.checkpoint)).size
                last = size - 1 if start is None else start
                yield b"retry: 1000\n\n"
                async for summary in _replay(auth.log, last, size):
                    yield _frame(Event("entry", summary, str(summary["index"])))
                    last = summary["index"]
                while not await request.is_disconnected():
                    if drain.going_away.is_set():
                        yield _frame(Event("going-away", {"reason": "shutdown"}))
                        return
                    event = await _next(q, drain.going_away)
                    if event is None:
                        yield _frame(Event("keep-alive", {}))
                    elif event.name == "entry" and event.id is not None and int(event.id) <= last:
                        continue  # already sent by the replay
                    elif event.name != "":
                        if event.name == "entry" and event.id is not None:
                            last = int(event.id)
                        yield _frame(event)
            finally:
                drain.streams -= 1
                ctx.events.unsubscribe(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )


async def _next(q: asyncio.Queue[Event], interrupt: asyncio.Event) -> Event | None:
    """The next event; an empty-named one once ``interrupt`` is set; None after :data:`KEEP_ALIVE_S` of neither."""
    getter = asyncio.ensure_future(q.get())
    waiter = asyncio.ensure_future(interrupt.wait())
    try:
        done, _ = await asyncio.wait({getter, waiter}, timeout=KEEP_ALIVE_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not getter.done():
            getter.cancel()
    if getter in done:
        return getter.result()
    return Event("", {}) if waiter in done else None
