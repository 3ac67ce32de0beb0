"""The LLM-streams benchmark (issue #11): faultline's load generator, simulator and proxies on
long token streams, each beside a peer in the same run, as one table. Run it through
benches/llm-streams.sh, which installs the peers and builds faultline first.

Environment: FAULTLINE_BENCH_QUICK=1 for a short run; FAULTLINE_BENCH_ONLY=1,3 for some
scenarios; FAULTLINE_BIN, FAULTLINE_BENCH_OHA, FAULTLINE_BENCH_FLOOR (floor.c, built) and
FAULTLINE_BENCH_OUT (set by the script).
Prints the table and exits 0 whatever the figures; non-zero only when the bench could not run."""

import os
import sys
import tempfile
import time
import traceback

from procs import BenchError
from proxies import proxies, tcp_proxy
from rate import plain_rate
from streams import all_in_one, streams
from table import Table


def sizes(quick):
    """(rate, seconds, tokens per second) per scenario. Full: about five minutes."""
    if quick:
        return {"s1": (500, 2, 20), "s2": (500, 4, 5), "s3": (750, 2, 1000, 2),
                "s4": (2000, 2), "s5": (500, 2), "s6": (1, 2000)}
    return {"s1": (1000, 6, 20), "s2": (1000, 12, 5), "s3": (750, 5, 1000, 4),
            "s4": (5000, 5), "s5": (1000, 6), "s6": (4, 10000)}


def main():
    quick = bool(os.environ.get("FAULTLINE_BENCH_QUICK"))
    only = {s.strip() for s in os.environ.get("FAULTLINE_BENCH_ONLY", "").split(",") if s.strip()}
    wanted = lambda n: not only or n in only  # noqa: E731
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    faultline = os.environ.get("FAULTLINE_BIN", os.path.join(repo, "target/release/faultline"))
    out_dir = os.environ.get("FAULTLINE_BENCH_OUT", os.path.join(repo, "target/bench"))
    os.makedirs(out_dir, exist_ok=True)
    from services import Env

    work = tempfile.mkdtemp(prefix="llm-streams-", dir=out_dir)
    env = Env(faultline, sys.executable, os.environ.get("FAULTLINE_BENCH_OHA") or None, work,
              os.environ.get("FAULTLINE_BENCH_FLOOR") or None)
    z = sizes(quick)
    table = Table()
    started, load0 = time.time(), os.getloadavg()
    print(f"llm-streams bench ({'QUICK' if quick else 'full'}); work files in {work}",
          file=sys.stderr)
    steps = [
        ("1", lambda: streams(env, table, "1 streams", z["s1"][0], z["s1"][1], z["s1"][2], 50)),
        ("2", lambda: streams(env, table, "2 long streams", z["s2"][0], z["s2"][1], z["s2"][2], 50,
                              lag_target=False)),
        ("3", lambda: proxies(env, table, *z["s3"])),
        ("4", lambda: plain_rate(env, table, *z["s4"])),
        ("5", lambda: all_in_one(env, table, *z["s5"])),
        ("6", lambda: tcp_proxy(env, table, *z["s6"])),
    ]
    for name, step in steps:
        if not wanted(name):
            continue
        t = time.time()
        print(f"scenario {name} ...", file=sys.stderr, flush=True)
        try:
            step()
        except BenchError as e:
            print(f"the bench could not run scenario {name}: {e}", file=sys.stderr)
            return 1
        except Exception:  # a bug in the bench itself: say where, exit non-zero
            traceback.print_exc()
            return 1
        print(f"scenario {name} took {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    meta = {
        "mode": "quick" if quick else "full",
        "cpus": os.cpu_count(),
        "loadavg_before": load0,
        "loadavg_after": os.getloadavg(),
        "seconds": round(time.time() - started),
        "faultline": faultline,
        "work": work,
    }
    note = (f"{meta['mode']} run, {meta['cpus']} CPUs, load average {load0[0]:.2f} before and "
            f"{meta['loadavg_after'][0]:.2f} after, {meta['seconds']} s")
    print(table.text())
    print(note)
    with open(os.path.join(out_dir, "llm-streams.md"), "w") as f:
        f.write(table.markdown() + "\n\n" + note + "\n")
    with open(os.path.join(out_dir, "llm-streams.json"), "w") as f:
        f.write(table.json(meta) + "\n")
    print(f"written: {out_dir}/llm-streams.md, {out_dir}/llm-streams.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
