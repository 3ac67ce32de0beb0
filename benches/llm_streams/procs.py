"""The processes a scenario measures: each is its own OS process, so its CPU time comes from
/proc/<pid>/stat (utime + stime, which count every thread) and its memory from
/proc/<pid>/status. A process with workers (nginx) is measured as its whole tree."""

import os
import re
import signal
import subprocess
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return data[data.rindex(")") + 2 :].split()


def cpu_seconds(pid):
    """utime + stime of every thread of `pid` (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def tree(pid):
    """`pid` and its descendants (nginx's master and its workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out


class Proc:
    """A started process whose CPU and memory are read from /proc while it runs, and whose
    final CPU time is read from its zombie's /proc/<pid>/stat before it is reaped."""

    def __init__(self, name, argv, log_path, env=None, cwd=None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self.started = time.monotonic()
        self.final_cpu = None
        self.max_rss_kib = 0
        self.samples = []  # (seconds since start, VmRSS KiB of the tree)

    def cpu(self):
        if self.final_cpu is not None:
            return self.final_cpu
        total = 0.0
        for p in tree(self.pid):
            try:
                total += cpu_seconds(p)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    def rss_kib(self):
        values = [_status_kib(p, "VmRSS") for p in tree(self.pid)]
        values = [v for v in values if v is not None]
        return sum(values) if values else None

    def sample(self):
        rss = self.rss_kib()
        if rss is not None:
            self.samples.append((time.monotonic() - self.started, rss))
            self.max_rss_kib = max(self.max_rss_kib, rss)
        hwm = _status_kib(self.pid, "VmHWM")
        if hwm is not None and len(tree(self.pid)) == 1:
            self.max_rss_kib = max(self.max_rss_kib, hwm)

    def rss_at(self, seconds):
        """The RSS sampled closest to `seconds` after start (the idle baseline)."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda s: abs(s[0] - seconds))[1]

    def exited(self):
        r = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        return r is not None

    def wait(self, timeout):
        """Waits up to `timeout` s for the process to exit; returns its exit status, or None
        (after killing it) when it did not. Its CPU is read before it is reaped."""
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() > deadline:
                self.kill()
                return None
            time.sleep(0.02)
        self.final_cpu = cpu_seconds(self.pid)
        _, status, usage = os.wait4(self.pid, 0)
        # ru_maxrss is the kernel's own peak (KiB) and catches a peak between two samples.
        self.max_rss_kib = max(self.max_rss_kib, usage.ru_maxrss)
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        return self.popen.returncode

    def stop(self, grace=5.0):
        if self.popen.returncode is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.wait(grace) is None:
            self.kill()

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()

    def log_tail(self, lines=15):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""


class Sampler:
    """Samples the memory of the watched processes every 20 ms on a thread of its own."""

    def __init__(self, procs, period=0.02):
        self.procs = procs
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for p in self.procs:
                if p.popen.returncode is None and p.final_cpu is None:
                    try:
                        p.sample()
                    except (FileNotFoundError, ProcessLookupError, ValueError):
                        pass
            self._stop.wait(self.period)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=2)


def wait_for_line(proc, needle, timeout):
    """Waits for `needle` in the process's log (a readiness line); returns the line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(proc.log_path, "rb") as f:
                for line in f.read().decode(errors="replace").splitlines():
                    if needle in line:
                        return line
        except OSError:
            pass
        if proc.popen.poll() is not None:
            break
        time.sleep(0.02)
    raise BenchError(
        f"{proc.name} did not print `{needle}` within {timeout} s; its log:\n{proc.log_tail()}"
    )


def wait_for_port(proc, needle, timeout):
    """Waits for the readiness line holding `needle` and returns the 127.0.0.1 port it names."""
    line = wait_for_line(proc, needle, timeout)
    m = re.search(r"127\.0\.0\.1:(\d+)", line)
    if not m:
        raise BenchError(f"{proc.name} printed `{line}`, with no 127.0.0.1 port in it")
    return int(m.group(1))


class BenchError(Exception):
    """The bench itself could not run (a tool failed to start): exit non-zero with this."""
