"""The governing core of the MCP gateway, the same for both faces (stdio and streamable HTTP).

:class:`Gateway` holds the upstream servers (:mod:`fiat.mcp.upstream`), one
:class:`~fiat.enforce.bootstrap.Governor` (this gateway runtime's key, its authority client,
its trust subscription, its receipt spool) and answers two requests (docs/mcp.md):

**tools/list** — the union of the upstreams' tools, each named ``<server>___<tool>``, keeping
only those this principal could be permitted to call: the authority is asked which
``(action, resource)`` pairs *some* request by the principal could be permitted
(``POST /v1/authorize/permissible``) for action ``<server>___<tool>`` and resource
``McpServer::"<server>"`` (also for a tool whose resource comes from an argument: the listing
has no arguments). The answer is cached per (principal, policy digest); a trust state naming
another policy digest makes the next listing ask again.

**tools/call** — governed like ``fiat run`` governs a command:

1. resolve ``<server>___<tool>``; the resource is ``McpServer::"<server>"``, or
   ``<resource_type>::"<arguments[resource_argument]>"`` where the configuration names one (a
   missing or ill-typed argument is a tool error; nothing is asked, nothing called);
2. establish (in a worker thread) a :class:`~fiat.enforce.guard.Session` for principal, action,
   resource and context = the arguments object exactly (Cedar: ``context.input.<arg>``): a
   permit bound to this runtime's key (``cnf``) and to the digest of exactly these arguments;
   a denial is a tool error (``isError``) giving the authority's reasons and what would be needed;
   a pending approval is a tool error naming the approval id, the group, and the command that
   approves it (``[mcp] approval_wait_s`` > 0 waits for it instead); the identical call retried
   (same principal, tool and argument digest) redeems that approval;
3. forward the call to the upstream while a :class:`~fiat.enforce.bootstrap.Heartbeat`
   re-verifies it (expiry, revocation, trust freshness, policy change, environment);
4. on a halt: cancel the upstream request (``notifications/cancelled``), wait
   ``runtime.halt_grace_ms``; a stdio upstream is then killed with its whole tree and started
   again for later calls (a cancelled request is never answered, MCP 2025-11-25 "Cancellation",
   so nothing can show that it stopped); the agent gets a tool error naming the halt step and reason;
   a gateway given a ``parent`` permit (the agent is a sub-agent: ``fiat mcp --parent``) asks for
   every call's permit as that permit's **child** (docs/formats.md, "Delegation"): the authority
   attenuates it (the parent's scope, every ancestor principal's Cedar, the parent chain's expiry,
   depth) or refuses it (``delegation refused: …``, a denial like any other), and a revocation of
   the parent (or of any ancestor, or of a principal of the chain) covers the call's permit, so its
   guard halts it;
5. the call ended: trust must still hold (a final check; else the result is withheld as a halt);
   the receipt (runtime key, verification chain, ``argumentsDigest``, ``resultDigest``) is
   spooled and uploaded as ``fiat run``'s is; the result goes back with ``_meta`` ``fiat/permit``
   and ``fiat/receipt`` (the permit id whose bundle proves the call, its receipt's log index).
   With ``[mcp] receipts = "spooled"`` the result goes back once the receipt is signed and
   durably spooled, and it is uploaded right after, off the call's path (``fiat/receipt`` is
   then absent; the bundle has the receipt once it is logged).

``resultDigest`` is SHA-256 over the RFC 8785 form of :func:`result_view`: the result's
``content``, ``structuredContent`` (when present) and ``isError`` (``_meta`` aside: transports stamp it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INTERNAL_ERROR

from fiat.api.client import ClientError
from fiat.config import Config
from fiat.enforce.bootstrap import Bootstrap, Governor, Heartbeat, guard_settings
from fiat.enforce.containment import Containment
from fiat.enforce.guard import Denied, Halt, NotEstablished
from fiat.enforce.spool import SpoolError
from fiat.errors import FiatError, MalformedError
from fiat.formats.action import entity_uid
from fiat.formats.encoding import json_digest
from fiat.mcp.settings import SEPARATOR, TOOL_NAME_START, GatewayConfig, ToolSettings
from fiat.mcp.upstream import Upstream, UpstreamError, make_upstream

log = logging.getLogger("fiat.mcp")

#: The Cedar entity type of an upstream server (the resource of its tools).
SERVER_TYPE = "McpServer"


def server_resource(server: str) -> str:
    return f"{SERVER_TYPE}::{json.dumps(server)}"


def result_view(result: types.CallToolResult) -> dict[str, Any]:
    """What ``resultDigest`` covers: ``content``, ``structuredContent`` (if any), ``isError``."""
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    view: dict[str, Any] = {"content": dumped.get("content", []), "isError": bool(result.is_error)}
    if result.structured_content is not None:
        view["structuredContent"] = dumped["structuredContent"]
    return view


def result_digest(result: types.CallToolResult) -> str:
    return json_digest(result_view(result))


def tool_error(text: str, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
    return result if meta is None else result.model_copy(update={"meta": meta})


@dataclass(frozen=True)
class Route:
    """Where a namespaced tool goes."""

    name: str  # <server>___<tool>
    server: str
    tool: str
    settings: ToolSettings | None


@dataclass
class CallOutcome:
    """What one governed call came to (also for the bench and tests)."""

    result: types.CallToolResult
    outcome: str  # completed | failed | halted | denied | pending | not-established | invalid
    permit_id: str | None = None
    receipt_index: int | None = None
    approval_id: str | None = None
    halt: Halt | None = None
    upstream_action: str | None = None  # on a halt: what was done to the upstream


class Gateway:
    """The MCP gateway: ``await start()``, then ``list_tools``/``call_tool`` per principal; ``await close()``.

    ``config`` names the upstreams; ``cfg`` is the Fiat home's configuration (the runtime key,
    the authority, ``[runtime]`` timings and containment, ``[mcp]``)."""

    def __init__(
        self,
        cfg: Config,
        config: GatewayConfig,
        *,
        url: str | None = None,
        approver_hint: str | None = None,
        parent: str | None = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        self.cfg, self.config, self.url = cfg, config, url
        #: The permit this gateway's agent acts under, as a sub-agent: every call's permit is its child.
        self.parent = parent
        #: Told one line per permitted call (``permit pmt_…: <tool> for <principal>``), as ``fiat run`` says it.
        self.on_status = on_status
        self.containment = Containment.from_config(cfg)
        self.upstreams: dict[str, Upstream] = {
            name: make_upstream(name, s, self.containment) for name, s in config.servers.items()
        }
        self.governor: Governor | None = None
        #: (principal, action, argument digest) -> the approval id a call of exactly these opened.
        self.pending: dict[tuple[str, str, str], str] = {}
        self._listing: dict[str, tuple[str | None, dict[str, bool]]] = {}
        self._approval_groups: dict[str, str] = {}  # approval id -> who must approve it
        self._approver_hint = approver_hint
        self.grace = cfg.runtime.halt_grace_ms / 1000
        self.call_timeout = cfg.mcp.call_timeout_s
        self.receipts = cfg.mcp.receipts

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Check the containment, open the governor, connect every upstream (fails if one cannot)."""
        if any(u.kind == "stdio" for u in self.upstreams.values()):
            await anyio.to_thread.run_sync(self.containment.check, os.getcwd())
        settings = replace(guard_settings(self.cfg), approval_wait=self.cfg.mcp.approval_wait_s)
        argv = [sys.executable, *sys.argv]
        self.governor = await anyio.to_thread.run_sync(
            lambda: Governor.open(self.cfg, argv=argv, cwd=os.getcwd(), url=self.url, settings=settings)
        )
        try:
            for upstream in self.upstreams.values():
                await upstream.connect()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for upstream in self.upstreams.values():
            with contextlib.suppress(Exception):
                await upstream.close()
        if self.governor is not None:
            governor, self.governor = self.governor, None
            await anyio.to_thread.run_sync(governor.release)

    def _governor(self) -> Governor:
        if self.governor is None:
            raise FiatError("the gateway is not started")
        return self.governor

    # -- routing --------------------------------------------------------------------------------
    def routes(self) -> dict[str, tuple[Route, types.Tool]]:
        out: dict[str, tuple[Route, types.Tool]] = {}
        for server, upstream in self.upstreams.items():
            for tool in upstream.tools:
                if tool.name.startswith(TOOL_NAME_START):
                    # ``a`` + ``___`` + ``_x`` would read as server ``a_``'s tool ``x``: never proxied.
                    log.warning("upstream %r: tool %r is not proxied (a name starting with _)", server, tool.name)
                    continue
                name = f"{server}{SEPARATOR}{tool.name}"
                if name in out:  # an upstream listing one name twice: the first stands
                    continue
                settings = self.config.servers[server].tools.get(tool.name)
                out[name] = (Route(name, server, tool.name, settings), tool)
        return out

    def resource_of(self, route: Route, arguments: dict[str, Any]) -> str:
        """The call's Cedar resource; :class:`MalformedError` for a missing or ill-typed argument."""
        if route.settings is None:
            return server_resource(route.server)
        arg = route.settings.resource_argument
        value = arguments.get(arg)
        if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
            raise MalformedError(
                f"argument {arg!r}", f"must be a non-empty string (it names the {route.settings.resource_type})"
            )
        return f"{route.settings.resource_type}::{json.dumps(str(value))}"

    # -- tools/list -----------------------------------------------------------------------------
    async def list_tools(self, principal: str) -> list[types.Tool]:
        """The namespaced tools ``principal`` could be permitted to call (see the module docstring)."""
        entity_uid(principal, "principal")  # a malformed principal is refused here, not by the authority
        routes = self.routes()
        allowed = await anyio.to_thread.run_sync(self._permissible, principal, sorted(routes))
        return [tool.model_copy(update={"name": name}) for name, (_, tool) in sorted(routes.items()) if allowed[name]]

    def _permissible(self, principal: str, names: Sequence[str]) -> dict[str, bool]:
        governor = self._governor()
        current = governor.monitor.snapshot().policy_digest
        digest, known = self._listing.get(principal, (None, {}))
        if digest is None or digest != current or any(n not in known for n in names):
            routes = self.routes()
            candidates = [
                (n, server_resource(routes[n][0].server if n in routes else n.split(SEPARATOR, 1)[0])) for n in names
            ]
            digest, flags = governor.client.permissible(governor.runtime.key, principal, candidates)
            known = dict(zip(names, flags, strict=True))
            self._listing[principal] = (digest, known)
        return {n: known.get(n, False) for n in names}

    # -- tools/call -----------------------------------------------------------------------------
    async def call_tool(self, principal: str, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
        return (await self.govern(principal, name, arguments)).result

    async def govern(self, principal: str, name: str, arguments: dict[str, Any] | None) -> CallOutcome:
        """One governed tool call (the module docstring's steps); never raises for a refusal."""
        arguments = dict(arguments or {})
        route_tool = self.routes().get(name)
        if route_tool is None:
            return CallOutcome(tool_error(f"no tool {name!r} behind this gateway"), "invalid")
        route = route_tool[0]
        try:
            entity_uid(principal, "principal")
            resource = self.resource_of(route, arguments)
            key = (principal, name, json_digest(arguments))
        except MalformedError as exc:
            return CallOutcome(tool_error(f"not called: {exc}"), "invalid")
        governor = self._governor()
        remembered = self.pending.get(key)
        if remembered is not None:
            status = await anyio.to_thread.run_sync(self._approval_status, remembered)
            if status == "pending":
                return CallOutcome(self._approval_error(remembered, None, name), "pending", approval_id=remembered)
            if status != "approved":
                self.pending.pop(key, None)  # denied, expired or used: a new request opens a new approval
                remembered = None
        boot = governor.session(
            principal=principal,
            action=name,
            resource=resource,
            context=arguments,
            parent=self.parent,
            approval_id=remembered,
        )
        try:
            await anyio.to_thread.run_sync(boot.establish)
        except Denied as exc:
            if exc.decision.get("decision") == "pending" and exc.decision.get("approvalId"):
                approval = str(exc.decision["approvalId"])
                self.pending[key] = approval
                return CallOutcome(self._approval_error(approval, exc.decision, name), "pending", approval_id=approval)
            return CallOutcome(tool_error(self._denial_text(exc, principal, name, resource)), "denied")
        except (NotEstablished, ClientError) as exc:
            return CallOutcome(
                tool_error(f"Not called: trust could not be established for {name}: {exc}"), "not-established"
            )
        if remembered is not None:
            self.pending.pop(key, None)  # redeemed
        if self.on_status is not None:
            self.on_status(f"permit {boot.session.permit_id}: {name} for {principal}")
        return await self._forward(boot, route, arguments)

    def _approval_status(self, approval_id: str) -> str:
        governor = self._governor()
        try:
            return str(governor.client.approval(governor.runtime.key, approval_id)["status"])
        except ClientError:
            return "unknown"

    def _approval_error(self, approval_id: str, decision: dict[str, Any] | None, name: str) -> types.CallToolResult:
        group = self._approval_groups.get(approval_id, "the approving group")
        for reason in (decision or {}).get("reasons") or []:
            m = re.match(r"an approval by (\S+) is required", str(reason))  # fiat.authorize.explain.permitted
            if m:
                group = self._approval_groups[approval_id] = f"an approver of group {m.group(1)}"
        home = self._approver_hint or "--home <an approver's home>"
        text = (
            f"Not called yet: {name} with these arguments needs a human approval (approval {approval_id}, "
            f"by {group}). An approver runs: fiat approve {approval_id} {home} --url {self._governor().url} "
            f"(or `fiat approvals show {approval_id}` first). Then call the tool again with exactly the same "
            "arguments; different arguments need their own approval."
        )
        return tool_error(text, {"fiat/approval": approval_id})

    @staticmethod
    def _denial_text(exc: Denied, principal: str, name: str, resource: str) -> str:
        reasons = [r for r in exc.decision.get("reasons") or [] if isinstance(r, str)] or [exc.reason]
        if any(r.startswith("delegation refused") for r in reasons):
            needed = (
                "the parent permit to cover the call (its scope, what its principals are permitted, "
                "its lifetime): ask the agent that started this one"
            )
        elif any(r.startswith("forbidden by policy") for r in reasons):
            needed = "the forbidding policy not to apply: different arguments, or a change of policy by its owners"
        else:
            needed = (
                f"a policy permitting {principal} to call {name} on {resource} with such arguments "
                "(ask the policy's owners), or other arguments that a policy permits"
            )
        return f"Denied by policy: {name} was not called. Why: {'; '.join(reasons)}. What would be needed: {needed}."

    async def _forward(self, boot: Bootstrap, route: Route, arguments: dict[str, Any]) -> CallOutcome:
        session = boot.session
        upstream = self.upstreams[route.server]
        session.containment = upstream.containment
        start = session.now()
        session.execution_start = start
        heartbeat = Heartbeat(session, boot.monitor, boot.flusher)
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        halted = asyncio.Event()

        def watch() -> None:
            try:
                if heartbeat.run(stop.is_set) is not None:
                    loop.call_soon_threadsafe(halted.set)
            finally:
                heartbeat.close()

        watcher = threading.Thread(target=watch, name=f"fiat-mcp-guard-{session.permit_id}", daemon=True)
        watcher.start()
        call = asyncio.ensure_future(upstream.call(route.tool, arguments, self.call_timeout))
        halt_wait = asyncio.ensure_future(halted.wait())
        upstream_action: str | None = None
        result: types.CallToolResult | None = None
        error: str | None = None
        try:
            await asyncio.wait({call, halt_wait}, return_when=asyncio.FIRST_COMPLETED)
            if halted.is_set() and not call.done():
                upstream_action = await self._stop_upstream(upstream, call)
            elif call.done():
                try:
                    got = call.result()
                    result = types.CallToolResult(
                        content=got.content, structured_content=got.structured_content, is_error=got.is_error
                    )
                except (MCPError, UpstreamError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                    error = f"the upstream {route.server!r} failed the call: {exc}"
                except Exception as exc:
                    error = f"the upstream {route.server!r} failed the call: {type(exc).__name__}: {exc}"
        except BaseException:
            # The agent cancelled the call (or the gateway is stopping): the upstream's request ends too.
            session.stop(Halt("cancelled", "the agent cancelled the call"))
            with anyio.CancelScope(shield=True):
                upstream_action = await self._stop_upstream(upstream, call)
                await self._finish(boot, watcher, stop, heartbeat.wake, start, arguments, tool_error("cancelled"))
            raise
        finally:
            halt_wait.cancel()
        if session.halted is None and upstream_action is None:
            # The call ended: trust must still hold at its end, or its result is withheld.
            with contextlib.suppress(Halt):
                await anyio.to_thread.run_sync(session.check)
        halt = session.halted
        if halt is not None:
            done = f"; the upstream was {upstream_action}" if upstream_action else "; its result is withheld"
            result = tool_error(
                f"Halted at {halt.step}: {halt.reason}. Fiat stopped the call {route.name}{done}. "
                "Trust for this call can no longer be proven; do not assume it took effect or did not."
            )
        elif result is None:
            result = tool_error(error or "the upstream returned no result")
        return await self._finish(boot, watcher, stop, heartbeat.wake, start, arguments, result, upstream_action)

    async def _stop_upstream(self, upstream: Upstream, call: asyncio.Future[Any]) -> str:
        """Cancel the request (``notifications/cancelled``), wait the grace, kill a stdio tree."""
        if call.done():
            return "already finished"
        began = anyio.current_time()
        call.cancel()  # the SDK client sends notifications/cancelled for the request
        with contextlib.suppress(BaseException):
            await asyncio.wait({call}, timeout=self.grace)
        # A cancelled request is never answered (MCP 2025-11-25, "Cancellation"): the upstream gets
        # the grace period to wind down, as a halted command gets it between SIGTERM and SIGKILL.
        await anyio.sleep(max(0.0, self.grace - (anyio.current_time() - began)))
        if upstream.kind == "stdio":
            return await upstream.kill()
        return "cancelled (notifications/cancelled, or its request stream closed at 2026-07-28)"

    async def _finish(
        self,
        boot: Bootstrap,
        watcher: threading.Thread,
        stop: threading.Event,
        wake: threading.Event,
        start: float,
        arguments: dict[str, Any],
        result: types.CallToolResult,
        upstream_action: str | None = None,
    ) -> CallOutcome:
        session = boot.session
        stop.set()
        wake.set()  # the watcher waits on its heartbeat: end that wait now, not a heartbeat later
        await anyio.to_thread.run_sync(watcher.join, 5.0)
        if session.halted is not None:
            outcome, code = "halted", None
        elif result.is_error:
            outcome, code = "failed", 1
        else:
            outcome, code = "completed", 0
        digest = result_digest(result)

        def deliver() -> tuple[int | None, str | None]:
            envelope = session.sign_receipt(
                start, session.now(), outcome, code, arguments_digest=json_digest(arguments), result_digest=digest
            )
            if self.receipts == "spooled":
                # Durable before the agent sees the result; logged right after, off the call's path
                # (should the upload fail, the spool keeps it for the next flush: nothing is lost).
                try:
                    entry = boot.spool.put(envelope.to_json(), session.permit_id, boot.url)
                except SpoolError:
                    pass  # an unwritable spool: deliver in line, as fiat run does
                else:
                    threading.Thread(
                        target=boot.spool.upload,
                        args=(entry, boot.upload_s),
                        kwargs={"lock": False},
                        name=f"fiat-mcp-receipt-{session.permit_id}",
                        daemon=True,
                    ).start()
                    return None, None
            delivery = boot.deliver(envelope)
            return delivery.index, delivery.error

        index, why = await anyio.to_thread.run_sync(deliver)
        if why:
            log.warning("receipt of permit %s not logged yet: %s", session.permit_id, why)
        meta = {**(result.meta or {}), "fiat/permit": session.permit_id, "fiat/receipt": index}
        final = result.model_copy(update={"meta": meta})
        return CallOutcome(final, outcome, session.permit_id, index, None, session.halted, upstream_action)

    # -- the low-level MCP server (both faces) -----------------------------------------------------------
    def server(self, principal_of: Callable[[Any], str], name: str = "fiat-mcp") -> Server[Any]:
        """An SDK low-level server answering ``tools/list`` and ``tools/call`` for the principal
        ``principal_of(ctx)`` names (the configured one on stdio; the bearer token's on HTTP)."""

        async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            try:
                return types.ListToolsResult(tools=await self.list_tools(principal_of(ctx)))
            except FiatError as exc:  # fail closed: no listing without the authority's answer
                raise MCPError(INTERNAL_ERROR, f"the gateway cannot list tools now: {exc}") from exc

        async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            return await self.call_tool(principal_of(ctx), params.name, params.arguments)

        from fiat import __version__

        return Server(name, version=__version__, on_list_tools=on_list_tools, on_call_tool=on_call_tool)


async def serve_stdio(gateway: Gateway, principal: str) -> None:
    """The stdio face: the agent speaks MCP on this process's stdin/stdout (either revision)."""
    from mcp.server.stdio import stdio_server

    server = gateway.server(lambda _ctx: principal)
    await gateway.start()
    try:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        with anyio.CancelScope(shield=True):
            await gateway.close()
