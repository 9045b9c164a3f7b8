"""The soak's arithmetic (bench/soak_stats.py) on a synthetic event list: the 10-minute run itself is a benchmark,
not a test, so its definitions (outage, the window excluded from latency, error classes) are pinned here."""
from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from soak_stats import Event, outage_s, outcome_of, summarize  # noqa: E402

KILL = 10.0
EVENTS = [
    Event(0.0, 1.0, "HTTP 200", "text"),
    Event(2.0, 3.0, "HTTP 200", "audio"),
    Event(9.0, 2.0, "HTTP 503", "image"),  # in flight at the kill
    Event(9.5, 0.6, "HTTP 200", "video"),  # answered by the old engine just after the kill: not a recovery
    Event(11.0, 0.1, "HTTP 503", "text"),
    Event(12.0, 30.0, "ReadTimeout", "audio"),
    Event(13.0, 4.0, "HTTP 200", "image"),  # first success sent after the kill: ends at 17
    Event(14.0, 5.0, "HTTP 200", "video"),
    Event(18.0, 2.0, "HTTP 200", "text"),
    Event(20.0, 1.5, "HTTP 200", "audio"),
]


def test_outcome_classes():
    assert outcome_of(503) == "HTTP 503"
    assert outcome_of(error=httpx.ReadTimeout("slow")) == "ReadTimeout"
    assert outcome_of(error=httpx.ConnectError("refused")) == "ConnectError"


def test_outage_is_kill_to_first_success_sent_after_it():
    assert outage_s(EVENTS, KILL) == pytest.approx(7.0)
    assert outage_s([e for e in EVENTS if e.start < KILL or not e.ok], KILL) is None


def test_summary_counts_percentiles_and_outage_window():
    s = summarize(EVENTS, KILL)
    assert s["requests"] == 10 and s["errors"] == 3
    assert s["errors_by_class"] == {"HTTP 503": 2, "ReadTimeout": 1}
    assert s["outcomes"] == {"HTTP 200": 7, "HTTP 503": 2, "ReadTimeout": 1}
    assert s["by_kind"] == {"audio": 3, "image": 2, "text": 3, "video": 2}
    assert s["outage_s"] == pytest.approx(7.0)
    lat = s["latency"]
    # every request: 0.1 0.6 1 1.5 2 2 3 4 5 30 (numpy's linear interpolation)
    assert (lat["all"]["n"], lat["all"]["p50_s"], lat["all"]["max_s"]) == (10, 2.0, 30.0)
    assert lat["all"]["p95_s"] == pytest.approx(18.75) and lat["all"]["p99_s"] == pytest.approx(27.75)
    assert lat["ok"]["n"] == 7 and lat["ok"]["p50_s"] == 2.0
    # 200s not overlapping [10, 17]: 1.0, 3.0, 2.0, 1.5
    out = lat["ok_outside_outage"]
    assert out["n"] == 4 and out["p50_s"] == pytest.approx(1.75) and out["max_s"] == 3.0
    assert out["p95_s"] == pytest.approx(2.85) and out["p99_s"] == pytest.approx(2.97)
    assert s["during_outage"] == {"requests": 6, "outcomes": {"HTTP 200": 3, "HTTP 503": 2, "ReadTimeout": 1}}


def test_no_kill_and_no_recovery():
    s = summarize(EVENTS[:2], None)
    assert s["outage_s"] is None and "ok_outside_outage" not in s["latency"] and s["errors"] == 0
    never = summarize([Event(0.0, 1.0, "HTTP 200"), Event(11.0, 0.2, "HTTP 503")], KILL)
    assert never["outage_s"] is None and never["latency"]["ok_outside_outage"]["n"] == 1
    assert summarize([], KILL)["latency"]["all"] == {"n": 0, "p50_s": None, "p95_s": None, "p99_s": None,
                                                     "max_s": None}
