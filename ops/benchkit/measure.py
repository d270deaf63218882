"""What the machine does during a run: CPU time per process, the service's resident memory over a
long load, and the facts about the machine the report opens with."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import threading
import time

from .common import ROOT, TARGETS

# ---------------------------------------------------------------------------
# CPU accounting: where the machine's CPU time went during a run
# ---------------------------------------------------------------------------


def _proc_cpu_s(pid) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _machine_cpu() -> tuple[float, float]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    tck = os.sysconf("SC_CLK_TCK")
    return sum(vals[:8]) / tck, idle / tck


class CpuMeter:
    """CPU seconds of the machine, the service, MariaDB, Redis and the load generator."""

    def __init__(self, pids: dict[str, int | None]):
        self.pids = pids

    def __enter__(self):
        self.t0 = time.monotonic()
        self.m0 = _machine_cpu()
        self.p0 = {k: _proc_cpu_s(p) if p else None for k, p in self.pids.items()}
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.c0 = r.ru_utime + r.ru_stime
        return self

    def __exit__(self, *exc):
        wall = self.wall = max(time.monotonic() - self.t0, 1e-6)
        total1, idle1 = _machine_cpu()
        busy = (total1 - self.m0[0]) - (idle1 - self.m0[1])
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        loadgen = r.ru_utime + r.ru_stime - self.c0
        pct = {"machine": 100 * busy / wall, "loadgen": 100 * loadgen / wall}
        for k, p in self.pids.items():
            v1 = _proc_cpu_s(p) if p else None
            pct[k] = None if v1 is None or self.p0[k] is None else 100 * (v1 - self.p0[k]) / wall
        known = sum(v for k, v in pct.items() if k != "machine" and v is not None)
        pct["other"] = max(pct["machine"] - known, 0.0)
        self.result = {k: round(v, 1) if v is not None else None for k, v in pct.items()}
        return False


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute; None for fewer than 4."""
    if len(points) < 4:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / var


class RssSampler:
    """The service's resident set size (VmRSS in /proc/<pid>/status) every `every` seconds, on a
    thread of its own, with a progress line every minute of a long load. load_ended() and stop()
    take one sample more each: the figures *at the end* and *after*."""

    def __init__(self, pid: int | None, every: float, note, load_s: float):
        self.pid, self.every, self.note, self.load_s = pid, every, note, load_s
        self.samples: list[tuple[float, float]] = []  # (monotonic, MiB)
        self.marks: dict[str, tuple[float, float]] = {}
        self.t0 = time.monotonic()
        self.load_t0: float | None = None
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def rss_mib(self) -> float | None:
        if not self.pid:
            return None
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def sample(self, mark: str | None = None) -> float | None:
        v, t = self.rss_mib(), time.monotonic()
        if v is not None:
            with self._lock:
                self.samples.append((t, v))
                if mark:
                    self.marks[mark] = (t, v)
        return v

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()

    def load_started(self):
        self.load_t0 = time.monotonic()

    def load_ended(self):
        self.sample("end")
        self.load_t0 = None

    def stop(self):
        if self._halt.is_set():
            return
        self._halt.set()
        self._thread.join()
        self.sample("after")

    def _run(self):
        k, next_note = 0, 60.0
        while True:
            v = self.sample()
            lt = self.load_t0
            if lt is not None and self.load_s >= 120 and v is not None and time.monotonic() - lt >= next_note:
                with self._lock:
                    peak = max(x for t, x in self.samples if t >= lt)
                self.note(f"soak: {next_note:.0f}/{self.load_s:g} s of load, service RSS {v:,.1f} MiB "
                          f"(peak so far {peak:,.1f})")
                next_note += 60
            k += 1
            if self._halt.wait(max(0.0, self.t0 + k * self.every - time.monotonic())):
                return

    def summary(self, window: tuple[float, float] | None, after_s: float) -> dict:
        with self._lock:
            s = list(self.samples)
            marks = dict(self.marks)
        t0 = self.t0
        out: dict = {"pid": self.pid, "every_s": self.every,
                     "samples": [[round(t - t0, 2), round(v, 2)] for t, v in s]}
        if not s or not window:
            return out
        start, end = window
        before = [v for t, v in s if t < start]
        during = [(t, v) for t, v in s if start <= t <= end]
        third = (end - start) / 3
        first = slope_per_min([(t, v) for t, v in during if t <= start + third])
        last = slope_per_min([(t, v) for t, v in during if t >= end - third])
        out.update({
            "load_start_s": round(start - t0, 2), "load_end_s": round(end - t0, 2),
            "before_mib": before[-1] if before else None,
            "peak_mib": max(v for _, v in during) if during else None,
            "end_mib": marks["end"][1] if "end" in marks else (during[-1][1] if during else None),
            "after_mib": marks["after"][1] if "after" in marks else None,
            "after_s": round(marks["after"][0] - end, 1) if "after" in marks else after_s,
            "first_third_slope_mib_per_min": first, "last_third_slope_mib_per_min": last,
            "grows": None if last is None else last > TARGETS["soak_rss_slope_mib_per_min"],
        })
        return out


# ---------------------------------------------------------------------------
# Machine facts
# ---------------------------------------------------------------------------


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def first_line(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return ((p.stdout or p.stderr).strip().splitlines() or [""])[0]
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def machine_info(a, loadgen_version: str) -> dict:
    cpu_model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    nproc = first_line(["nproc"])
    commit = first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "nproc": nproc, "cpu_model": cpu_model, "memory_gib": round(mem_gib, 1) if mem_gib else None,
        "kernel": platform.release(), "os": first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "mariadb": first_line([a.mariadbd, "--version"]).split("Ver", 1)[-1].strip(),
        "redis": first_line([a.redis_server, "--version"]),
        "redis_benchmark": first_line(["redis-benchmark", "--version"]),
        "load_generator": loadgen_version, "python": platform.python_version(),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()], "uptime_start": uptime(),
    }
