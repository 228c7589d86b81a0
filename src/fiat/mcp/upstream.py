"""The gateway's upstream MCP servers, spoken to with the official SDK's client.

* :class:`StdioUpstream` — a command started by :mod:`fiat.enforce.containment` exactly as
  ``fiat run`` starts one (``runtime.containment``: a bubblewrap PID namespace with the Fiat
  home hidden, or the weaker process mode), its stdin and stdout carrying newline-delimited
  JSON-RPC (MCP 2025-11-25, Transports, "stdio"). :meth:`StdioUpstream.kill` ends its whole
  tree (the containment's sweep) and the next call starts it again.
* :class:`HttpUpstream` — a streamable-HTTP endpoint. It gets the headers configured for it
  (its own credential) and nothing of the agent's: the gateway holds no path by which an
  agent's token could reach it (MCP Authorization, "Token Passthrough" is forbidden).

Both connect with ``mode="auto"`` by default: the SDK first tries the 2026-07-28 stateless
revision (``server/discover``) and falls back to the 2025-11-25 ``initialize`` handshake;
``protocol = "legacy"`` forces the handshake. Cancelling a call's task is the cancellation:
the SDK puts ``notifications/cancelled`` on the wire (stdio, and HTTP at 2025-11-25) or
closes the request's response stream (HTTP at 2026-07-28, where that is the signal).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from fiat.enforce.containment import Contained, Containment
from fiat.errors import FiatError
from fiat.mcp.settings import ServerSettings

log = logging.getLogger("fiat.mcp")

#: How long connecting to an upstream (spawn + handshake) may take.
CONNECT_TIMEOUT = 30.0


class UpstreamError(FiatError):
    """An upstream server cannot be reached or failed the protocol."""


@asynccontextmanager
async def _pipe_transport(contained: Contained) -> AsyncIterator[TransportStreams]:
    """JSON-RPC messages over a contained process's stdin/stdout, one per line."""
    proc = contained.proc
    assert proc.stdin is not None and proc.stdout is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    rtransport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), proc.stdout)
    wtransport, wprotocol = await loop.connect_write_pipe(asyncio.Protocol, proc.stdin)
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)

    async def read_lines() -> None:
        async with read_send:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, ConnectionError) as exc:  # a line beyond the limit, a broken pipe
                    await read_send.send(exc)
                    return
                if not line:
                    return  # the upstream closed its stdout (it exited)
                if not line.strip():
                    continue
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except ValueError as exc:
                    await read_send.send(exc)
                    continue
                await read_send.send(SessionMessage(message))

    async def write_lines() -> None:
        async with write_recv:
            async for m in write_recv:
                if wtransport.is_closing():
                    return
                wtransport.write((m.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n").encode())

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_lines)
        tg.start_soon(write_lines)
        try:
            yield read_recv, write_send
        finally:
            tg.cancel_scope.cancel()
            wtransport.close()
            rtransport.close()
    del wprotocol


class Upstream:
    """One upstream server: connected by an owner task, called from any task, reconnected on demand."""

    kind = "upstream"

    def __init__(self, name: str, settings: ServerSettings) -> None:
        self.name, self.settings = name, settings
        self.client: Client | None = None
        self._stop: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._lock = anyio.Lock()
        self.tools: list[types.Tool] = []
        self.connections = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def containment(self) -> str | None:
        """What the receipt records as the containment of a call (None: not the gateway's process)."""
        return None

    @property
    def protocol_version(self) -> str:
        return self.client.protocol_version if self.client is not None else ""

    def _transport(self) -> Any:
        raise NotImplementedError

    def _mode(self) -> str:
        return self.settings.protocol

    async def _own(self, ready: anyio.Event, failed: list[BaseException]) -> None:
        """Hold the SDK client open in this task (its task groups must close where they opened)."""
        assert self._stop is not None and self._done is not None
        try:
            async with Client(self._transport(), mode=self._mode()) as client:
                self.client = client
                self.tools = await self._list(client)
                ready.set()
                await self._stop.wait()
        except BaseException as exc:
            failed.append(exc)
            ready.set()
        finally:
            self.client = None
            self._done.set()
            await self._stopped()

    async def _stopped(self) -> None:
        return None

    def _alive(self) -> bool:
        return True

    @staticmethod
    async def _list(client: Client) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        for _ in range(100):
            page = await client.list_tools(cursor=cursor) if cursor else await client.list_tools()
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                break
        return tools

    async def connect(self) -> Client:
        """The connected client (connecting, or reconnecting after a kill, first)."""
        async with self._lock:
            if self.client is not None and not self._alive():
                await self.close()  # the upstream exited on its own: start it again
            if self.client is not None:
                return self.client
            ready, failed = anyio.Event(), list[BaseException]()
            self._stop, self._done = anyio.Event(), anyio.Event()
            self._task = asyncio.get_running_loop().create_task(self._own(ready, failed))  # held: not collected
            with anyio.move_on_after(CONNECT_TIMEOUT) as scope:
                await ready.wait()
            if scope.cancelled_caught:
                await self.close()
                raise UpstreamError(f"upstream {self.name!r} did not answer within {CONNECT_TIMEOUT:.0f} s")
            if failed or self.client is None:
                why = failed[0] if failed else "closed"
                raise UpstreamError(f"upstream {self.name!r} could not be connected: {why}")
            self.connections += 1
            log.info("upstream %s connected (%s, protocol %s)", self.name, self.kind, self.protocol_version)
            return self.client

    async def call(self, tool: str, arguments: dict[str, Any], timeout: float) -> types.CallToolResult:
        client = await self.connect()
        return await client.call_tool(tool, arguments, read_timeout_seconds=timeout)

    async def kill(self) -> str:
        """End what the upstream is doing beyond a cancellation; say what was done."""
        return "cancelled"

    async def close(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._done is not None:
            with anyio.move_on_after(10):
                await self._done.wait()


class StdioUpstream(Upstream):
    kind = "stdio"

    def __init__(self, name: str, settings: ServerSettings, containment: Containment) -> None:
        super().__init__(name, settings)
        self._containment = containment
        self.contained: Contained | None = None

    @property
    def containment(self) -> str | None:
        return self._containment.mode

    @property
    def pid(self) -> int | None:
        return None if self.contained is None else self.contained.proc.pid

    def _alive(self) -> bool:
        return self.contained is not None and self.contained.proc.poll() is None

    def _spawn(self) -> Contained:
        assert self.settings.command is not None
        cwd = self.settings.cwd or os.getcwd()
        env = {**os.environ, **self.settings.env} if self.settings.env else None
        try:
            return self._containment.start(
                self.settings.command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
            )
        except OSError as exc:
            raise UpstreamError(f"cannot start upstream {self.name!r} ({self.settings.command[0]}): {exc}") from exc

    def _transport(self) -> Any:
        self.contained = self._spawn()
        return _pipe_transport(self.contained)

    async def _stopped(self) -> None:
        contained, self.contained = self.contained, None
        if contained is not None:
            await anyio.to_thread.run_sync(contained.sweep)

    async def kill(self) -> str:
        """Kill the whole contained tree now (it is started again for the next call)."""
        contained = self.contained
        if contained is None:
            return "cancelled"
        await anyio.to_thread.run_sync(contained.sweep)  # SIGKILL to the tree: nothing of it survives
        await self.close()
        pid = contained.proc.pid
        return f"cancelled; it gave no answer within the grace period, so its process tree (pid {pid}) was killed"


class HttpUpstream(Upstream):
    kind = "http"

    def _transport(self) -> Any:
        from mcp.client.streamable_http import streamable_http_client

        assert self.settings.url is not None
        http = httpx2.AsyncClient(headers=dict(self.settings.headers), timeout=httpx2.Timeout(30.0, read=300.0))
        return _closing(streamable_http_client(self.settings.url, http_client=http), http)


@asynccontextmanager
async def _closing(transport: Any, http: httpx2.AsyncClient) -> AsyncIterator[TransportStreams]:
    try:
        async with transport as streams:
            yield streams
    finally:
        with contextlib.suppress(Exception):
            await http.aclose()


def make_upstream(name: str, settings: ServerSettings, containment: Containment) -> Upstream:
    if settings.command is not None:
        return StdioUpstream(name, settings, containment)
    return HttpUpstream(name, settings)
