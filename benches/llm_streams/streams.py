"""Scenarios 1, 2 and 5: long token streams from faultline's load generator and from the aiohttp
peer against `faultline simulate` in its own process, and everything in one `faultline run`."""

import re

from procs import BenchError
from services import floor, load_experiment, run_faultline, run_peer, simulator

PEER = "aiohttp client"
FLOOR = "bare C floor"


class SimCost:
    """What the simulator spent serving one load generator's run."""

    def __init__(self, sim, run):
        sim.max_rss_kib = 0
        idle = sim.rss_kib()
        before = sim.cpu()
        self.load = run()
        self.cpu = sim.cpu() - before
        events = self.load.records.events
        self.per_event_us = self.cpu / events * 1e6 if events else None
        peak = self.load.records.peak_open
        self.rss_per_stream = (sim.max_rss_kib - idle) / peak if peak and idle else None


def streams(env, table, label, rate, secs, tps, tokens, ttft="200ms", peer=True,
            lag_target=True):
    """faultline's load generator, then the peer, each at `rate` for `secs` against a simulator
    of its own."""
    slug = "s" + label.split()[0]
    stream_s = _duration_ms(ttft) / 1000 + (tokens - 1) / tps
    limit = 1 + secs + stream_s + 60

    def served(name, run):
        # A fresh simulator per load generator, so neither inherits the other's heap.
        sim, port = simulator(env, f"sim-{name}-{slug}", ttft, tps, tokens)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        try:
            return SimCost(sim, lambda: run(url, sim))
        finally:
            sim.stop()

    fl = served("faultline", lambda url, sim: run_faultline(
        env, "faultline-" + slug, load_experiment(url, rate, secs), [sim], limit))
    pr = served("peer", lambda url, sim: run_peer(
        env, "peer-" + slug, url, rate, secs, [sim], limit)) if peer else None
    try:
        bare = floor(env, "floor-" + slug, _duration_ms(ttft), tps, tokens, rate, secs, limit)
        floor_failed = None
    except BenchError as e:
        # The floor is a reference, like oha: without it the rest of the table still stands.
        bare, floor_failed = None, str(e).splitlines()[0]
    scen = f"{label}: {rate}/s x {tokens} tok @ {tps} tok/s"
    f, p = fl.load, pr.load if pr else None
    pn = PEER if p else ""
    planned = int(rate * secs)
    expected_open = int(rate * min(secs, stream_s))
    table.add(scen, "load gen: CPU per SSE event (µs)", f.cpu_per_event_us(),
              p and p.cpu_per_event_us(), pn, target="≤ 5",
              met=_le(f.cpu_per_event_us(), 5))
    table.add(scen, "load gen: CPU per request (µs)", f.cpu_per_request_us(),
              p and p.cpu_per_request_us(), pn, spec="{:.0f}")
    table.add(scen, "load gen: RSS per open stream (KiB)", f.rss_per_stream_kib(),
              p and p.rss_per_stream_kib(), pn, target="≤ 8", met=_le(f.rss_per_stream_kib(), 8))
    open_target = 10_000 if expected_open >= 10_000 else expected_open
    table.add(scen, f"peak open streams (planned ≈ {expected_open})", f.records.peak_open,
              p and p.records.peak_open, pn, spec="{:,}", target=f"≥ {open_target:,}",
              met=f.records.peak_open >= 0.97 * open_target, ratio=None)
    table.add(scen, f"streams ok (planned {planned:,}; faultline +1 in its idle second)",
              f.records.ok, p and p.records.ok, pn, spec="{:,}", target="all",
              met=f.records.ok == f.records.requests, ratio=None)
    table.add(scen, "send lag p50 (ms)", f.records.lag(0.5), p and p.records.lag(0.5), pn,
              spec="{:.3f}")
    table.add(scen, "send lag p99 (ms)", f.records.lag(0.99), p and p.records.lag(0.99), pn,
              spec="{:.3f}", target="< 1" if lag_target else "",
              met=_lt(f.records.lag(0.99), 1) if lag_target else None)
    table.add(scen, "send lag max (ms)", max(f.records.lags, default=None),
              p and max(p.records.lags, default=None), pn, spec="{:.2f}")
    table.add(scen, "late requests (sent > 10 ms late)", f.records.late, p and p.records.late,
              pn, spec="{:,}", target="0" if lag_target else "",
              met=(f.records.late == 0) if lag_target else None, ratio=None)
    _check_lag(table, scen, f)
    table.add(scen, "simulator: CPU per SSE event (µs), serving each", fl.per_event_us,
              pr and pr.per_event_us, pn, target="≤ 5", met=_le(fl.per_event_us, 5))
    table.add(scen, "simulator: RSS per open stream (KiB), serving each", fl.rss_per_stream,
              pr and pr.rss_per_stream, pn)
    if bare:
        _floor(table, scen, bare, f.cpu_per_event_us(), fl.per_event_us)
    elif floor_failed:
        table.add(scen, "the floor", f"not run: {floor_failed}")
    _saturation(table, scen, f)


def _floor(table, scen, bare, load_us, sim_us):
    """faultline beside floor.c: the simulator's writes and a read per readiness, and nothing
    else. A floor above the 5 µs target means no program making those syscalls meets it in
    that run."""
    table.add(scen, "load gen beside the floor (a read per readiness): CPU per SSE event (µs)",
              load_us, bare.reader_us, FLOOR)
    table.add(scen, "simulator beside the floor (the same writes): CPU per SSE event (µs)",
              sim_us, bare.writer_us, FLOOR)
    table.add(scen, "  floor: streams ok / planned, events, writes cut short",
              f"{bare.summary['ok']:,} / {bare.summary['requests']:,}, {bare.events:,}, "
              f"{bare.cut_short}", met=bare.complete)


def all_in_one(env, table, rate, secs):
    """Scenario 5: the quickstart's mode, simulated host + HTTP proxy + load in one run."""
    from services import free_port

    host, proxy = free_port(), free_port()
    services = (f"services:\n  host: {{ simulate: {{ listen: \"127.0.0.1:{host}\", ttft: 200ms, "
                f"tokens_per_second: 20, completion_tokens: 50 }} }}\n")
    proxies = f"proxies:\n  p: {{ listen: \"127.0.0.1:{proxy}\", upstream: \"127.0.0.1:{host}\" }}\n"
    url = f"http://127.0.0.1:{proxy}/v1/chat/completions"
    yaml = load_experiment(url, rate, secs, services=services, proxies=proxies)
    r = run_faultline(env, "all-in-one", yaml, [], 1 + secs + 2.65 + 60)
    scen = f"5 all-in-one: {rate}/s x 50 tok @ 20 tok/s"
    rec = r.records
    table.add(scen, "send lag p99 (ms)", rec.lag(0.99), spec="{:.3f}", target="< 1",
              met=_lt(rec.lag(0.99), 1))
    table.add(scen, "late requests", rec.late, spec="{:,}", target="0", met=rec.late == 0)
    _check_lag(table, scen, r)
    ttft = r.overall["whole_run"]["ttft"]
    table.add(scen, "TTFT p50 (ms), simulator's is 200", ttft and ttft["p50_ms"], spec="{:.1f}",
              target="≈ 200", met=None if not ttft else ttft["p50_ms"] < 210)
    table.add(scen, "streams ok / planned", f"{rec.ok:,} / {rec.requests:,}",
              met=rec.ok == rec.requests)
    table.add(scen, "peak open streams", rec.peak_open, spec="{:,}")
    table.add(scen, "CPU per SSE event, whole process (µs)", r.cpu_per_event_us())
    _saturation(table, scen, r)


def _check_lag(table, scen, result):
    """faultline's own report.json must agree with what the bench read from requests.csv."""
    lag = result.overall and result.overall.get("send_lag")
    if lag:
        table.add(scen, "  (report.json: send lag p99 ms / late)",
                  f"{lag['p99_ms']:.3f} / {result.overall['late']}")


def _saturation(table, scen, result):
    """Whether the run's verdict warned that the machine was the limit, and for how long."""
    said = [w for w in result.warnings if "saturated" in w]
    m = re.search(r"for (\S+) of the (\S+) watched", said[0]) if said else None
    table.add(scen, "report warned the CPU was saturated",
              f"yes, {m.group(1)} of {m.group(2)}" if m else ("yes" if said else "no"))


def _duration_ms(duration):
    """Milliseconds of a duration the scenarios write as "200ms" or "1s"."""
    if duration.endswith("ms"):
        return int(duration[:-2])
    if duration.endswith("s"):
        return int(float(duration[:-1]) * 1000)
    raise ValueError(f"not a duration: {duration!r}")


def _le(v, limit):
    return None if v is None else v <= limit


def _lt(v, limit):
    return None if v is None else v < limit
