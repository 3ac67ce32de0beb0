"""The processes the scenarios start: faultline's simulator and proxies, nginx, the load
generators. Every address is 127.0.0.1; every port comes from the OS."""

import json
import os
import re
import socket
import time
import urllib.request

from procs import BenchError, Proc, Sampler, wait_for_line, wait_for_port
from records import faultline_records, faultline_report, peer_records


def free_port():
    """A port the OS just handed out (bound to :0 and released) for tools that need a number
    in their configuration (nginx)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Env:
    """Paths and tools of one bench run."""

    def __init__(self, faultline, python, oha, work, floor=None):
        self.faultline = faultline
        self.python = python
        self.oha = oha
        self.floor = floor
        self.work = work
        self.here = os.path.dirname(os.path.abspath(__file__))
        self._n = 0

    def path(self, name):
        self._n += 1
        return os.path.join(self.work, f"{self._n:02d}-{name}")


def simulator(env, name, ttft, tps, tokens):
    """`faultline simulate` in its own process; returns (Proc, port)."""
    p = Proc(
        name,
        [env.faultline, "simulate", "--listen", "127.0.0.1:0", "--ttft", ttft,
         "--tokens-per-second", str(tps), "--completion-tokens", str(tokens)],
        env.path(name + ".log"),
    )
    port = wait_for_port(p, "simulated inference host on http://", 10)
    wait_port(port)
    return p, port


def nginx(env, upstream_ports):
    """nginx as a streaming reverse proxy, one server (on a port of its own) per upstream;
    returns (Proc, ports). worker_processes auto: one worker per core, as faultline's runtime
    has one worker thread per core, so neither is held to fewer cores than the other."""
    d = env.path("nginx")
    os.makedirs(os.path.join(d, "tmp"), exist_ok=True)
    ports = [free_port() for _ in upstream_ports]
    servers = "".join(f"""    upstream u{i} {{ server 127.0.0.1:{up}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://u{i};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
""" for i, (up, port) in enumerate(zip(upstream_ports, ports)))
    conf = f"""worker_processes auto;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
worker_rlimit_nofile 20000;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
{servers}}}
"""
    with open(os.path.join(d, "nginx.conf"), "w") as f:
        f.write(conf)
    p = Proc("nginx", ["nginx", "-p", d, "-c", os.path.join(d, "nginx.conf"), "-e",
                       os.path.join(d, "error.log")], os.path.join(d, "stdout.log"))
    try:
        for port in ports:
            wait_port(port)
    except BenchError as e:
        raise BenchError(f"nginx did not start: {e}; {p.log_tail()}") from None
    return p, ports


def faultline_proxy(env):
    """`faultline proxy` (its Toxiproxy-compatible admin API) in its own process, with an
    HTTP-mode proxy and a TCP-mode proxy created through that API; returns (Proc, admin)."""
    p = Proc("faultline-proxy", [env.faultline, "proxy", "--listen", "127.0.0.1:0"],
             env.path("faultline-proxy.log"))
    line = wait_for_line(p, "admin API listening on http://", 10)
    admin = re.search(r"http://(127\.0\.0\.1:\d+)", line).group(1)
    return p, admin


def create_proxy(admin, name, upstream_port, mode):
    """Creates a proxy on the admin API; returns the port it listens on."""
    body = json.dumps({"name": name, "listen": "127.0.0.1:0",
                       "upstream": f"127.0.0.1:{upstream_port}", "mode": mode}).encode()
    req = urllib.request.Request(f"http://{admin}/proxies", data=body, method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        created = json.load(r)
    port = int(created["listen"].rsplit(":", 1)[1])
    wait_port(port)
    return port


def load_experiment(url, rate, secs, stream=True, idle=1.0, services="", proxies="",
                    max_in_flight=20000, max_tokens=256):
    """One open-loop stream: `idle` s at 1 req/s (the idle memory is read then), then `rate`
    for `secs` s. timeout is long so no stream of the bench is cut by it."""
    idle_ms, end_ms = int(idle * 1000), int((idle + secs) * 1000)
    steps = f"  - {{ at: {idle_ms}ms, rate: {{ stream: s, to: {rate}/s }} }}\n" if idle else ""
    first = 1 if idle else rate
    return f"""version: 1
name: bench
{services}{proxies}load:
  s:
    url: {url}
    rate: {first}/s
    request: {{ api: openai-chat, stream: {"true" if stream else "false"}, max_tokens: {max_tokens} }}
    timeout: 60s
    stall_timeout: 30s
    max_in_flight: {max_in_flight}
timeline:
{steps}  - {{ at: {end_ms}ms, end: true }}
"""


class LoadResult:
    """What a load generator's run delivered and what it cost its own process."""

    def __init__(self, name, proc, records, idle_at, overall=None, warnings=()):
        self.name = name
        self.records = records
        self.cpu = proc.cpu()
        self.peak_rss = proc.max_rss_kib
        self.idle_rss = proc.rss_at(idle_at)
        self.overall = overall
        self.warnings = list(warnings)

    def cpu_per_event_us(self):
        return self.cpu / self.records.events * 1e6 if self.records.events else None

    def cpu_per_request_us(self):
        n = len(self.records.sent)
        return self.cpu / n * 1e6 if n else None

    def rss_per_stream_kib(self):
        if self.idle_rss is None or not self.records.peak_open:
            return None
        return (self.peak_rss - self.idle_rss) / self.records.peak_open


def run_faultline(env, name, yaml, watch, limit, idle=1.0):
    """`faultline run` of a generated experiment in its own process; `watch` are the other
    processes whose memory is sampled meanwhile. Returns LoadResult."""
    d = env.path(name)
    os.makedirs(d, exist_ok=True)
    exp = os.path.join(d, "experiment.yaml")
    with open(exp, "w") as f:
        f.write(yaml)
    out = os.path.join(d, "out")
    p = Proc(name, [env.faultline, "run", exp, "--out", out, "-q"], os.path.join(d, "run.log"))
    with Sampler([p, *watch]):
        code = p.wait(limit)
    if code is None:
        raise BenchError(f"`faultline run` for {name} did not end within {limit} s")
    if not os.path.exists(os.path.join(out, "report.json")):
        raise BenchError(f"`faultline run` for {name} exited {code} without a report:\n{p.log_tail()}")
    overall, warnings = faultline_report(out)
    return LoadResult(name, p, faultline_records(out), 0.8 * idle, overall, warnings)


def run_peer(env, name, url, rate, secs, watch, limit, idle=1.0):
    """The aiohttp peer (peer_client.py) in its own process. Returns LoadResult."""
    out = env.path(name + ".csv")
    p = Proc(name, [env.python, os.path.join(env.here, "peer_client.py"), "--url", url,
                    "--rate", str(rate), "--seconds", str(secs), "--idle", str(idle),
                    "--timeout", "60", "--out", out], env.path(name + ".log"))
    with Sampler([p, *watch]):
        code = p.wait(limit)
    if code != 0 or not os.path.exists(out):
        raise BenchError(f"the aiohttp peer exited {code}:\n{p.log_tail()}")
    result = LoadResult(name, p, peer_records(out), 0.8 * idle)
    # Its own idle baseline, printed just before its first request, whenever its imports ended.
    with open(p.log_path) as f:
        m = re.search(r"idle VmRSS (\d+) kB", f.read())
    result.idle_rss = int(m.group(1)) if m else None
    return result


class FloorResult:
    """What the bare C pair (floor.c) spent on the same streams: the kernel's floor."""

    def __init__(self, writer_cpu, reader_cpu, summary, cut_short):
        self.summary = summary
        self.events = summary["events"]
        self.writer_us = writer_cpu / self.events * 1e6 if self.events else None
        self.reader_us = reader_cpu / self.events * 1e6 if self.events else None
        # Every stream whole, every byte read, no write cut short: else the figures are not a
        # floor of the same work, and the table says so.
        self.complete = (summary["ok"] == summary["requests"]
                         and summary["bytes"] == summary["expected_bytes"] and cut_short == 0)
        self.cut_short = cut_short


def floor(env, name, ttft_ms, tps, tokens, rate, secs, limit):
    """floor.c's server and load, each in its own process, on the same streams as a scenario;
    None when the bench runs without it (FAULTLINE_BENCH_FLOOR unset: it could not be built)."""
    if not env.floor:
        return None
    server = Proc(name + "-serve", [env.floor, "serve", str(ttft_ms), str(tps), str(tokens)],
                  env.path(name + "-serve.log"))
    load = None
    try:
        port = wait_for_port(server, "floor serving on 127.0.0.1:", 10)
        before = server.cpu()
        load = Proc(name + "-load", [env.floor, "load", str(port), str(rate), str(secs),
                                     str(tokens)], env.path(name + "-load.log"))
        code = load.wait(limit)
        writer = server.cpu() - before
    finally:
        if load and load.popen.returncode is None and load.final_cpu is None:
            load.kill()
        server.stop()
    if code is None:
        raise BenchError(f"the floor's load did not end within {limit} s")
    with open(load.log_path) as f:
        lines = [ln for ln in f.read().splitlines() if ln.startswith("{")]
    # Exit 1 is a run with streams not whole: still a result, reported as incomplete.
    if code not in (0, 1) or not lines:
        raise BenchError(f"the floor's load exited {code}:\n{load.log_tail()}")
    with open(server.log_path) as f:
        m = re.search(r"(\d+) writes cut short", f.read())
    return FloorResult(writer, load.cpu(), json.loads(lines[-1]), int(m.group(1)) if m else -1)
