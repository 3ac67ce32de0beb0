"""Per-request records from either load generator, reduced to the same figures: events and
requests delivered, send lag, late requests, the peak of concurrently open streams."""

import csv
import json
import math
import os

# A request sent more than this after its intended time is late (faultline's definition).
LATE_MS = 10.0


def percentile(values, q):
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q * len(s)) - 1))
    return s[k]


def peak_open(intervals):
    """The most intervals (start, end) open at one instant."""
    edges = []
    for start, end in intervals:
        edges.append((start, 1))
        edges.append((end, -1))
    # At equal times a close counts before an open, so back-to-back streams are not one more.
    edges.sort(key=lambda e: (e[0], e[1]))
    open_now = best = 0
    for _, d in edges:
        open_now += d
        best = max(best, open_now)
    return best


def _f(value):
    return float(value) if value not in ("", None) else None


class Records:
    """What one load generator's run delivered."""

    def __init__(self, rows):
        # rows: dicts with intended, sent, end (ms or None), ok (bool), events, tokens, ttft
        self.rows = rows
        self.sent = [r for r in rows if r["sent"] is not None]
        self.requests = len(rows)
        self.ok = sum(1 for r in rows if r["ok"])
        self.events = sum(r["events"] for r in rows)
        self.tokens = sum(r["tokens"] for r in rows)
        self.lags = [r["sent"] - r["intended"] for r in self.sent]
        self.late = sum(1 for lag in self.lags if lag > LATE_MS)
        self.peak_open = peak_open(
            (r["sent"], r["end"]) for r in self.sent if r["end"] is not None
        )
        self.ttfts = [r["ttft"] for r in rows if r["ok"] and r["ttft"] is not None]
        self.latencies = [r["end"] - r["intended"] for r in rows if r["ok"] and r["end"] is not None]

    def lag(self, q):
        return percentile(self.lags, q)


def faultline_records(out_dir):
    """requests.csv of a `faultline run` (docs/reports.md); latency_ms counts from intended."""
    rows = []
    with open(os.path.join(out_dir, "requests.csv"), newline="") as f:
        for r in csv.DictReader(f):
            intended, sent, latency = _f(r["intended_ms"]), _f(r["sent_ms"]), _f(r["latency_ms"])
            rows.append(
                {
                    "intended": intended,
                    "sent": sent,
                    "end": intended + latency if sent is not None and latency is not None else None,
                    "ok": r["outcome"] == "ok",
                    "events": int(r["events"] or 0),
                    "tokens": int(r["output_tokens"] or 0),
                    "ttft": _f(r["ttft_ms"]),
                }
            )
    return Records(rows)


def faultline_report(out_dir):
    """report.json's overall metrics and verdict warnings."""
    with open(os.path.join(out_dir, "report.json")) as f:
        report = json.load(f)
    ev = report["evaluation"]
    return ev["overall"], ev["verdict"].get("warnings", [])


def peer_records(path):
    """The peer client's CSV (peer_client.py)."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append(
                {
                    "intended": _f(r["intended_ms"]),
                    "sent": _f(r["sent_ms"]),
                    "end": _f(r["end_ms"]),
                    "ok": r["ok"] == "1",
                    "events": int(r["events"] or 0),
                    "tokens": int(r["tokens"] or 0),
                    "ttft": _f(r["ttft_ms"]),
                }
            )
    return Records(rows)
