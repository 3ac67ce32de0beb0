"""Scenario 4: plain request rate, non-streamed completions, faultline's load generator beside
oha at the same fixed rate against the same unpaced simulator."""

import json

from procs import Proc, Sampler
from records import percentile
from services import load_experiment, run_faultline, simulator

BODY = json.dumps({"model": "sim", "messages": [{"role": "user", "content": "ping"}],
                   "max_tokens": 4, "stream": False})


def plain_rate(env, table, rate, secs):
    sim, port = simulator(env, "sim-s4", "0ms", 1_000_000, 4)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    try:
        before = sim.cpu()
        fl = run_faultline(env, "s4-faultline", load_experiment(url, rate, secs, stream=False,
                                                                idle=0, max_tokens=4),
                           [sim], secs + 70, idle=0)
        sim_fl = sim.cpu() - before
        oha = _oha(env, url, rate, secs, sim) if env.oha else None
    finally:
        sim.stop()
    scen = f"4 plain rate: {rate}/s x {secs} s, non-streamed"
    planned = rate * secs
    if oha is None:
        table.add(scen, "oha", "not run: `cargo install oha` failed or was skipped")
    o = oha or {}
    lat = [r["end"] - r["intended"] for r in fl.records.rows if r["ok"]]
    table.add(scen, "load gen: CPU per request (µs)", fl.cpu_per_request_us(), o.get("cpu_us"),
              "oha", spec="{:.1f}")
    table.add(scen, f"requests ok of {planned:,}", fl.records.ok, o.get("ok"), "oha",
              spec="{:,}", target="all", met=fl.records.ok == planned, ratio=None)
    table.add(scen, "latency p50 (ms)", percentile(lat, 0.5), o.get("p50"), "oha", spec="{:.3f}")
    table.add(scen, "latency p99 (ms)", percentile(lat, 0.99), o.get("p99"), "oha",
              spec="{:.3f}")
    table.add(scen, "send lag p99 (ms) / late", f"{fl.records.lag(0.99):.3f} / {fl.records.late}")
    n = len(fl.records.sent)
    table.add(scen, "simulator: CPU per request (µs), serving each",
              sim_fl / n * 1e6 if n else None, o.get("sim_us"), "oha")


def _oha(env, url, rate, secs, sim):
    """oha at a fixed rate (-q), latency corrected for coordinated omission (measured from when
    each request was due, as faultline measures), JSON out."""
    before = sim.cpu()
    p = Proc("oha", [env.oha, "-q", str(rate), "-z", f"{secs}s", "-c", "200", "--no-tui",
                     "--latency-correction", "-m", "POST", "-H", "content-type: application/json",
                     "-d", BODY, "--output-format", "json", url], env.path("oha.json"))
    with Sampler([p]):
        code = p.wait(secs + 60)
    if code != 0:
        return {"ok": f"oha exited {code}: {p.log_tail(2)[:80]}"}
    with open(p.log_path) as f:
        out = json.load(f)
    codes = out.get("statusCodeDistribution") or {}
    total = sum(codes.values())
    ok = codes.get("200", 0)
    pct = out.get("latencyPercentiles") or {}
    return {
        "ok": ok,
        "cpu_us": p.cpu() / total * 1e6 if total else None,
        "sim_us": (sim.cpu() - before) / total * 1e6 if total else None,
        "p50": pct["p50"] * 1000 if pct.get("p50") is not None else None,
        "p99": pct["p99"] * 1000 if pct.get("p99") is not None else None,
    }
