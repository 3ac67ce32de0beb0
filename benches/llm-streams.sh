#!/usr/bin/env bash
# The LLM-streams benchmark (docs/benchmarks.md): faultline's load generator, simulator and
# proxies on long token streams, beside nginx, an aiohttp streaming client, oha and iperf3 in
# the same run. Installs what is missing, builds faultline, prints one table and writes it to
# target/bench/llm-streams.{md,json}. Exits 0 whatever the figures; non-zero only when the bench
# could not run.
#
#     bash benches/llm-streams.sh                          # about five minutes
#     FAULTLINE_BENCH_QUICK=1 bash benches/llm-streams.sh  # about a minute and a half, noisier
#     FAULTLINE_BENCH_ONLY=1,3 bash benches/llm-streams.sh # some scenarios (1-6) only
#
# Everything listens on and sends to 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned peers. aiohttp: the client library of the serving benchmarks LLM teams run. oha: a
# Rust HTTP load generator for plain request rate.
aiohttp_version=3.14.5
oha_version=1.16.0

# nginx (the reference SSE proxy) and iperf3 (how issue #11 measured Toxiproxy), from Debian's
# packages as .ci/run installs the drills' gateways.
if ! command -v nginx >/dev/null || ! command -v iperf3 >/dev/null; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends nginx iperf3 >/dev/null
fi

venv=target/bench-venv
if [ "$("$venv/bin/python" -c 'import aiohttp; print(aiohttp.__version__)' 2>/dev/null)" != "$aiohttp_version" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "aiohttp==$aiohttp_version"
fi
test "$("$venv/bin/python" -c 'import aiohttp; print(aiohttp.__version__)')" = "$aiohttp_version"

# oha is optional: if it cannot be built here, scenario 4 says so and the rest still runs.
tools=target/bench-tools
mkdir -p "$tools"
oha="$PWD/$tools/bin/oha"
if [ "$("$oha" --version 2>/dev/null)" != "oha $oha_version" ]; then
    echo "building oha $oha_version (once; a few minutes)" >&2
    if ! cargo install oha --locked --version "$oha_version" --root "$tools" >"$tools/oha-install.log" 2>&1; then
        echo "warning: cargo install oha $oha_version failed (log: $tools/oha-install.log); scenario 4 runs without it" >&2
        oha=""
    fi
fi

cargo build --release --locked

# The kernel's floor (benches/llm_streams/floor.c), built with the C compiler cargo already
# links with: a bare C writer and reader making the simulator's writes and a read per readiness
# for scenarios 1 and 2, and a bare C forwarder for scenario 6.
# Optional like oha: without a C compiler the rows beside the floor are left out.
floor="$PWD/$tools/floor"
if ! cc -O2 -Wall -Wextra -pthread -o "$floor" benches/llm_streams/floor.c 2>"$tools/floor-build.log"; then
    echo "warning: building benches/llm_streams/floor.c failed (log: $tools/floor-build.log); the floor's rows are left out" >&2
    floor=""
fi

# 2,500 and 10,000 open streams need that many sockets in each process.
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

PYTHONDONTWRITEBYTECODE=1 FAULTLINE_BIN="$PWD/target/release/faultline" FAULTLINE_BENCH_OHA="$oha" \
    FAULTLINE_BENCH_FLOOR="$floor" \
    FAULTLINE_BENCH_OUT="$PWD/target/bench" \
    exec "$venv/bin/python" benches/llm_streams/main.py
