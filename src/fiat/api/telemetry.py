"""What the server measures about itself: the Prometheus registry behind ``/metrics`` and the
time series behind ``GET /v1/health`` (the health page, ``/ui/health``).

One :class:`Telemetry` per application, with its own :class:`prometheus_client.CollectorRegistry`
(never the process-global one: several applications can live in one process).

* The ``metrics`` :class:`collections.Counter` the routes have always counted into is exported as
  is, one counter family ``fiat_<name>`` per key (:class:`_CounterExport`); decisions are also
  exported by outcome as ``fiat_decisions_total{decision=...}``.
* Histograms: ``fiat_authorize_seconds{decision}`` (``POST /v1/authorize`` from the verified proof
  to the durable decision) and ``fiat_log_integration_seconds`` (an append's time from being queued
  to its durable, signed checkpoint: the log's ``on_integrated`` hook, :mod:`fiat.prove.log`).
* Counters ``fiat_receipts_total{outcome}`` and ``fiat_halts_total{reason}`` (the step of a halted
  receipt's ``haltReason``, the part before ``": "``; docs/formats.md, "Execution receipt").
* Gauges read at scrape time: log tree size, trust-state epoch, trust-stream subscribers, and per
  connected stream its runtime's trust-state age and receipt-spool backlog.

What a trust stream says about its runtime (``?runtime=<kid>&spool=<n>``) is *self-reported and
unauthenticated*: it is shown and exported (label ``reported="self"``), never used for a decision.

The sampler (:meth:`Telemetry.sample`, every :data:`INTERVAL_S` seconds, :data:`KEEP` samples: one
hour) keeps what the health page charts: log size, authorizations per second, p50/p99 of the
authorize and integration latencies over the interval, denials, halts by reason, subscribers.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fiat.prove.witnessing import WitnessCollector

log = logging.getLogger("fiat.server")

INTERVAL_S = 2.0
KEEP = 1800  # one hour of samples
#: Latencies kept per interval for its percentiles (beyond this, every other one is dropped).
INTERVAL_CAP = 20_000
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: What a self-reported runtime id may look like (a key id); anything else shows as "invalid".
_RUNTIME_ID = re.compile(r"[A-Za-z0-9._:+=-]{1,128}")
ANONYMOUS = "anonymous"
INVALID = "invalid"

#: The metric families described in /metrics (HELP text) for the ``metrics`` Counter's keys.
COUNTER_HELP = {
    "requests_invalid_total": "Requests refused as malformed (400/422).",
    "errors_total": "Requests that failed with a server error.",
    "auth_failures_total": "Requests refused for a missing or bad credential or signature.",
    "authorizations_refused_total": "Authorization requests refused (not a decision: e.g. a revoked runtime).",
    "approvals_refused_total": "Approval decisions refused.",
}


def runtime_label(value: str | None) -> str:
    """The label a stream's self-reported runtime gets: its kid, ``anonymous`` or ``invalid``."""
    if not value:
        return ANONYMOUS
    return value if _RUNTIME_ID.fullmatch(value) else INVALID


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q ≤ 1) of sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(q * len(sorted_values) + 0.999999)))
    return sorted_values[rank - 1]


@dataclass
class StreamInfo:
    """One open ``/v1/trust/stream``: who it says it is (self-reported) and what it was last sent."""

    runtime: str
    spool: int | None
    connected: float
    last_delivered: float | None = None
    delivered: int = 0

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "reported": "self (unauthenticated)",
            "connectedSince": self.connected,
            "lastDelivered": self.last_delivered,
            "freshnessS": None if self.last_delivered is None else round(now - self.last_delivered, 3),
            "statesDelivered": self.delivered,
            "spoolBacklog": self.spool,
        }


@dataclass
class _Window:
    authorize: list[float] = field(default_factory=list)
    integration: list[float] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)
    halts: Counter[str] = field(default_factory=Counter)


def _keep(values: list[float], v: float) -> None:
    if len(values) >= INTERVAL_CAP:
        del values[::2]  # thin evenly: the percentiles stay representative
    values.append(v)


class Telemetry:
    """One application's metrics registry, stream registry and sampled time series."""

    def __init__(
        self,
        metrics: Counter[str],
        *,
        log_size: Callable[[], int],
        epoch: Callable[[], int],
        subscribers: Callable[[], int],
        clock: Callable[[], float] = time.time,
        witnesses: WitnessCollector | None = None,
    ) -> None:
        self.metrics = metrics
        self.clock = clock
        self.witnesses = witnesses
        self._log_size, self._epoch, self._subscribers = log_size, epoch, subscribers
        self._lock = threading.Lock()
        self._window = _Window()
        self._streams: dict[int, StreamInfo] = {}
        self._next_stream = 0
        self._integrated: deque[list[float]] = deque(maxlen=4096)  # batches not yet in the histogram
        self._seen_receipts: dict[int, None] = {}  # insertion-ordered: the oldest is dropped first
        self.samples: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.registry = CollectorRegistry()
        self.authorize_seconds = Histogram(
            "fiat_authorize_seconds",
            "POST /v1/authorize latency, from the verified proof to the durable decision, by decision.",
            ["decision"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.integration_seconds = Histogram(
            "fiat_log_integration_seconds",
            "Transparency-log integration latency: an append's time from queued to its durable signed checkpoint.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.receipts = PromCounter(
            "fiat_receipts", "Execution receipts logged, by outcome.", ["outcome"], registry=self.registry
        )
        self.halts = PromCounter(
            "fiat_halts",
            "Halted executions (receipts with outcome halted), by halt step.",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_Export(self))

    # -- observations (any thread) -------------------------------------------------------
    def observe_authorize(self, seconds: float, decision: str) -> None:
        self.authorize_seconds.labels(decision).observe(seconds)
        with self._lock:
            _keep(self._window.authorize, seconds)
            self._window.decisions[decision] += 1

    def observe_integration(self, latencies: list[float]) -> None:
        """The log's ``on_integrated`` hook: the latencies of one integrated batch's entries.

        Runs on the log's sequencer thread, so it only queues the list (one append); the
        histogram takes them in :meth:`flush` (at each scrape and each sample)."""
        self._integrated.append(latencies)

    def flush(self) -> None:
        """Move the queued integration latencies into the histogram and the interval's window."""
        batches = []
        while self._integrated:
            batches.append(self._integrated.popleft())
        if not batches:
            return
        for batch in batches:
            for s in batch:
                self.integration_seconds.observe(s)
        with self._lock:
            for batch in batches:
                for s in batch:
                    _keep(self._window.integration, s)

    def observe_receipt_once(self, log_index: int, outcome: object, halt_reason: object) -> None:
        """:meth:`observe_receipt` unless the receipt at ``log_index`` was counted (uploads are idempotent)."""
        with self._lock:
            if log_index in self._seen_receipts:
                return
            self._seen_receipts[log_index] = None
            if len(self._seen_receipts) > 65_536:
                del self._seen_receipts[next(iter(self._seen_receipts))]
        self.observe_receipt(outcome, halt_reason)

    def observe_receipt(self, outcome: object, halt_reason: object) -> None:
        """A logged receipt's ``outcome`` and ``haltReason`` (its step: the text before ``": "``)."""
        kind = outcome if outcome in ("completed", "failed", "halted") else "other"
        self.receipts.labels(kind).inc()
        if kind == "halted":
            step = str(halt_reason).split(":", 1)[0].strip() if isinstance(halt_reason, str) else "unknown"
            step = step if re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", step) else "other"
            self.halts.labels(step).inc()
            with self._lock:
                self._window.halts[step] += 1

    # -- trust streams ---------------------------------------------------------------------
    def stream_opened(self, runtime: str | None, spool: int | None) -> int:
        with self._lock:
            self._next_stream += 1
            self._streams[self._next_stream] = StreamInfo(runtime_label(runtime), spool, self.clock())
            return self._next_stream

    def stream_delivered(self, sid: int) -> None:
        with self._lock:
            info = self._streams.get(sid)
            if info is not None:
                info.last_delivered = self.clock()
                info.delivered += 1

    def stream_closed(self, sid: int) -> None:
        with self._lock:
            self._streams.pop(sid, None)

    def streams(self) -> list[StreamInfo]:
        with self._lock:
            return [
                StreamInfo(s.runtime, s.spool, s.connected, s.last_delivered, s.delivered)
                for s in self._streams.values()
            ]

    def spool_backlog(self) -> int:
        """The sum of the spool backlogs the connected runtimes reported."""
        return sum(s.spool or 0 for s in self.streams())

    # -- the time series -------------------------------------------------------------------
    def sample(self) -> dict[str, Any]:
        """Close the interval: one sample of what the health page charts."""
        self.flush()
        with self._lock:
            w, self._window = self._window, _Window()
        now = self.clock()
        prev = self.samples[-1] if self.samples else None
        span = INTERVAL_S if prev is None else max(1e-3, now - prev["t"])
        auth = sorted(w.authorize)
        integ = sorted(w.integration)
        point = {
            "t": now,
            "logSize": self._log_size(),
            "authorizations": len(auth),
            "authorizationsPerS": round(len(auth) / span, 3),
            "authorizeP50S": percentile(auth, 0.5),
            "authorizeP99S": percentile(auth, 0.99),
            "denials": w.decisions.get("deny", 0),
            "pending": w.decisions.get("pending", 0),
            "halts": dict(w.halts),
            "integrationP50S": percentile(integ, 0.5),
            "integrationP99S": percentile(integ, 0.99),
            "subscribers": self._subscribers(),
        }
        self.samples.append(point)
        return point

    def window(self, seconds: float) -> list[dict[str, Any]]:
        since = self.clock() - seconds
        return [s for s in list(self.samples) if s["t"] >= since]

    def run_sampler(self, stop: threading.Event) -> None:
        """Sample every :data:`INTERVAL_S` until ``stop`` is set (a daemon thread's body)."""
        while not stop.wait(INTERVAL_S):
            try:
                self.sample()
            except Exception as exc:  # a failed read (e.g. the log closing) skips one sample
                log.debug("telemetry sample skipped: %s", exc)


class _Export(Collector):
    """Scrape-time families: the ``metrics`` Counter, decisions by outcome, and the gauges."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.t = telemetry

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        t = self.t
        counts = dict(t.metrics)
        decisions = CounterMetricFamily("fiat_decisions", "Authorization decisions, by decision.", labels=["decision"])
        for d in ("allow", "deny", "pending"):
            decisions.add_metric([d], counts.get(f"decisions_{d}_total", 0))
        yield decisions
        for name, value in sorted(counts.items()):
            if not name.endswith("_total"):
                continue
            yield CounterMetricFamily(
                f"fiat_{name[: -len('_total')]}", COUNTER_HELP.get(name, f"Count of {name}."), value
            )
        yield GaugeMetricFamily("fiat_log_tree_size", "Entries in the transparency log.", t._log_size())
        yield GaugeMetricFamily("fiat_trust_state_epoch", "The epoch of the latest signed trust state.", t._epoch())
        yield GaugeMetricFamily("fiat_trust_stream_subscribers", "Open trust streams.", t._subscribers())
        now = t.clock()
        age = GaugeMetricFamily(
            "fiat_trust_state_age_seconds",
            "Per open trust stream: seconds since it was last sent a trust state "
            "(runtime self-reported, unauthenticated).",
            labels=["runtime", "stream", "reported"],
        )
        spool = GaugeMetricFamily(
            "fiat_receipt_spool_backlog",
            "Per open trust stream: receipts its runtime said were spooled when it connected (self-reported).",
            labels=["runtime", "stream", "reported"],
        )
        with t._lock:
            streams = list(t._streams.items())
        for sid, s in streams:
            if s.last_delivered is not None:
                age.add_metric([s.runtime, str(sid), "self"], now - s.last_delivered)
            if s.spool is not None:
                spool.add_metric([s.runtime, str(sid), "self"], s.spool)
        yield age
        yield spool
        if t.witnesses is not None:
            yield from _witness_families(t.witnesses, now)


def _witness_families(w: WitnessCollector, now: float) -> Iterator[Metric]:
    """Per witness: the size it last cosigned and when; the witnessed checkpoint's size and age."""
    size = GaugeMetricFamily(
        "fiat_witness_cosigned_size",
        "Per witness: the tree size of the last checkpoint it validly cosigned.",
        labels=["witness"],
    )
    success = GaugeMetricFamily(
        "fiat_witness_last_success_timestamp_seconds",
        "Per witness: when it last returned a valid cosignature.",
        labels=["witness"],
    )
    failures = CounterMetricFamily(
        "fiat_witness_submission_failures",
        "Per witness: submissions that got no valid cosignature.",
        labels=["witness"],
    )
    for s in w.statuses():
        if s.cosigned_size is not None:
            size.add_metric([s.name], s.cosigned_size)
        if s.last_success is not None:
            success.add_metric([s.name], s.last_success)
        failures.add_metric([s.name], s.failures)
    yield size
    yield success
    yield failures
    latest = w.latest()
    if latest is not None:
        yield GaugeMetricFamily(
            "fiat_witnessed_checkpoint_size", "Tree size of the newest quorum-cosigned checkpoint.", latest.size
        )
    quorum_time = w.quorum_time()
    if quorum_time is not None:
        yield GaugeMetricFamily(
            "fiat_witnessed_checkpoint_age_seconds",
            "Seconds since the quorum's cosignatures on the newest witnessed checkpoint (the quorum-th newest "
            "cosignature timestamp): what guards with runtime.require_witnessed bound.",
            max(0.0, now - quorum_time),
        )
