"""The soak's numbers from its event list (one event per request), kept apart from the HTTP and process code so
they can be checked on a synthetic list: answers by class, latency percentiles overall and outside the outage,
and the outage itself (from the engine kill to the first request sent after it that succeeds)."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

OK = "HTTP 200"


@dataclass(frozen=True)
class Event:
    start: float  # seconds since the load began
    latency: float
    outcome: str  # "HTTP <status>" or the exception's type name (ReadTimeout, ConnectError, ...)
    kind: str = "text"

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def end(self) -> float:
        return self.start + self.latency


def outcome_of(status: int | None = None, error: BaseException | None = None) -> str:
    """One class per HTTP status, one per exception type: a 503 during the outage and a client timeout are
    different failures and are counted apart."""
    if error is not None:
        return type(error).__name__
    return f"HTTP {status}"


def percentiles(latencies: list[float]) -> dict:
    if not latencies:
        return {"n": 0, "p50_s": None, "p95_s": None, "p99_s": None, "max_s": None}
    p50, p95, p99 = np.percentile(np.asarray(latencies, dtype=float), [50, 95, 99])
    return {"n": len(latencies), "p50_s": float(p50), "p95_s": float(p95), "p99_s": float(p99),
            "max_s": float(max(latencies))}


def outage_s(events: list[Event], kill_t: float) -> float | None:
    """Seconds from the kill to the end of the first successful request *sent* after it (a request that was
    already answered by the old engine says nothing about the new one); None when none succeeded."""
    ends = [e.end for e in events if e.ok and e.start >= kill_t]
    return min(ends) - kill_t if ends else None


def summarize(events: list[Event], kill_t: float | None) -> dict:
    """Counts by kind and outcome, errors (anything but 200) by class, and latency percentiles: of every
    request, of the 200s, and of the 200s whose lifetime does not overlap [kill, kill + outage]."""
    outcomes = Counter(e.outcome for e in events)
    out = {"requests": len(events), "by_kind": dict(sorted(Counter(e.kind for e in events).items())),
           "outcomes": dict(sorted(outcomes.items())),
           "errors": sum(n for k, n in outcomes.items() if k != OK),
           "errors_by_class": {k: n for k, n in sorted(outcomes.items()) if k != OK}}
    ok = [e for e in events if e.ok]
    out["latency"] = {"all": percentiles([e.latency for e in events]), "ok": percentiles([e.latency for e in ok])}
    if kill_t is None:
        out["outage_s"] = None
        return out
    gap = outage_s(events, kill_t)
    out["outage_s"] = gap
    window_end = kill_t + gap if gap is not None else float("inf")
    outside = [e for e in ok if e.end < kill_t or e.start > window_end]
    out["latency"]["ok_outside_outage"] = percentiles([e.latency for e in outside])
    during = [e for e in events if not (e.end < kill_t or e.start > window_end)]
    out["during_outage"] = {"requests": len(during),
                            "outcomes": dict(sorted(Counter(e.outcome for e in during).items()))}
    return out
