"""What every route of one application shares."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fiat.api.broadcaster import TrustBroadcaster
from fiat.api.credentials import Credentials
from fiat.api.events import EventHub
from fiat.api.telemetry import Telemetry
from fiat.authorize.authority import Authority
from fiat.prove.witnessing import WitnessCollector
from fiat.serving import Drain


@dataclass(frozen=True)
class ApiContext:
    authority: Authority
    broadcaster: TrustBroadcaster
    credentials: Credentials
    metrics: Counter[str]
    drain: Drain  # the shutdown drain (fiat.serving): what is refused while the server drains
    telemetry: Telemetry  # /metrics and /v1/health (fiat.api.telemetry)
    events: EventHub = field(default_factory=EventHub)  # /v1/events/stream: what the web pages watch
    witnesses: WitnessCollector | None = None  # the log's witnesses (fiat.prove.witnessing), when configured
