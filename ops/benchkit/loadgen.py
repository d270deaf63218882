"""The load generators: oha, and wrk as the fallback. Each one turns a job (a dict: URL or URL
file, method, body or body file, connections, duration, rate) into a command line and reads its
output into the same figures: counts per outcome, latency percentiles, throughput."""

from __future__ import annotations

import json
import math
import subprocess
import urllib.parse
from pathlib import Path

from .common import BenchError


def summarize_statuses(statuses: dict[str, int], conn_errors: dict[str, int],
                       also_ok: tuple[str, ...] = ()) -> dict:
    """Counts per outcome: 2xx (and the statuses in also_ok, e.g. 304 for conditional reads) are
    ok, 409 is out of stock, anything else and every connection error is an error."""
    def good(s: str) -> bool:
        return s.startswith("2") or s in also_ok

    ok = sum(n for s, n in statuses.items() if good(s))
    conflict = statuses.get("409", 0)
    other = {s: n for s, n in statuses.items() if not good(s) and s != "409"}
    errors = sum(other.values()) + sum(conn_errors.values())
    return {
        "ok": ok,
        "not_modified": statuses.get("304", 0),
        "conflict": conflict,
        "errors": errors,
        "statuses": dict(sorted(statuses.items())),
        "error_detail": {**{f"HTTP {s}": n for s, n in other.items()}, **conn_errors},
        "requests": ok + conflict + errors,
    }


class Oha:
    name = "oha"

    def __init__(self, binary: str):
        self.binary = binary
        self.version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()

    def command(self, job: dict) -> list[str]:
        cmd = [self.binary, "--no-tui", "--output-format", "json", "-c", str(job["conns"]),
               "-z", f"{job['duration']}s",
               # Wait for the requests still in flight at the deadline: an aborted request may
               # still have been decided by the service, and every decided order must be counted.
               "-w"]
        if job.get("rate"):
            cmd += ["-q", str(job["rate"]), "--latency-correction"]
        if job.get("threads"):
            cmd += ["--worker-threads", str(job["threads"])]
        if job.get("method", "GET") != "GET":
            cmd += ["-m", job["method"]]
        if job.get("body") is not None:
            cmd += ["-d", job["body"]]
        if job.get("body_lines"):
            cmd += ["-Z", str(job["body_lines"])]  # one random line of the file per request
        if job.get("body") is not None or job.get("body_lines"):
            cmd += ["-H", "content-type: application/json"]
        for h in job.get("headers", []):
            cmd += ["-H", h]
        if job.get("urls_file"):
            cmd += ["--urls-from-file", str(job["urls_file"])]  # a random line per request
        else:
            cmd.append(job["url"])
        return cmd

    def parse(self, stdout: str, job: dict) -> dict:
        data = json.loads(stdout)
        res = summarize_statuses(
            {str(k): int(v) for k, v in data.get("statusCodeDistribution", {}).items()},
            {str(k): int(v) for k, v in data.get("errorDistribution", {}).items()},
            tuple(job.get("also_ok", ())),
        )
        pct = data.get("latencyPercentiles", {})

        def ms(key):
            v = pct.get(key)
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v * 1000

        wall = float(data["summary"]["total"])
        res.update({
            "wall_s": wall,
            "p50_ms": ms("p50"), "p99_ms": ms("p99"), "p999_ms": ms("p99.9"),
            "max_ms": (data["summary"].get("slowest") or 0) * 1000,
            "bytes_per_answer": data["summary"].get("sizePerRequest"),
            "ok_per_s": res["ok"] / wall if wall else 0.0,
            "req_per_s": res["requests"] / wall if wall else 0.0,
        })
        return res


WRK_LUA = r"""
-- ops/bench: random body or path per request from a file, counts per status, JSON summary.
local lines, method, hdr_name, hdr_value, mode = {}, "GET", nil, nil, "body"
counts = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  method, mode = args[1], args[2]
  if args[4] and args[4] ~= "" then hdr_name, hdr_value = args[4]:match("^([^:]+):%s*(.*)$") end
  for line in io.lines(args[3]) do
    if #line > 0 then table.insert(lines, line) end
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  counts = {}
end

function request()
  local pick = lines[math.random(#lines)]
  local headers = {}
  if hdr_name then headers[hdr_name] = hdr_value end
  if mode == "body" then
    headers["Content-Type"] = "application/json"
    return wrk.format(method, nil, headers, pick)
  end
  return wrk.format(method, pick, headers, nil)
end

function response(status, headers, body)
  local k = tostring(status)
  counts[k] = (counts[k] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local c = t:get("counts")
    for k, v in pairs(c) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"statuses":{%s},"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50":%d,"p99":%d,"p999":%d,"max":%d,"bytes":%d,"requests":%d}\n',
    summary.duration, table.concat(parts, ","), e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    summary.bytes, summary.requests))
end
"""


class Wrk:
    """Fallback when oha cannot be built: closed loop only (wrk has no fixed-rate mode). wrk drops
    the requests in flight when the duration ends, so the service may have decided up to one
    request per connection more than wrk counted; the invariant check allows for that."""

    name = "wrk"

    def __init__(self, binary: str, workdir: Path):
        self.binary = binary
        out = subprocess.run([binary, "-v"], capture_output=True, text=True)
        text = (out.stdout + out.stderr).strip()
        self.version = text.splitlines()[0].split(" Copyright")[0].strip() if text else "wrk"
        self.script = workdir / "wrk-bench.lua"
        self.script.write_text(WRK_LUA)
        self.workdir = workdir

    def command(self, job: dict) -> list[str]:
        if job.get("rate"):
            raise BenchError("wrk has no fixed-rate (open-loop) mode")
        threads = max(1, min(2, job["conns"]))
        base = job.get("url") or ""
        if job.get("urls_file"):
            urls = [u for u in Path(job["urls_file"]).read_text().splitlines() if u]
            parsed = urllib.parse.urlsplit(urls[0])
            base = f"{parsed.scheme}://{parsed.netloc}/"
            lines_file = self.workdir / (Path(job["urls_file"]).stem + ".paths")
            lines_file.write_text("\n".join(urllib.parse.urlsplit(u).path + (
                "?" + urllib.parse.urlsplit(u).query if urllib.parse.urlsplit(u).query else "") for u in urls) + "\n")
            mode = "path"
        elif job.get("body_lines") or job.get("body") is not None:
            if job.get("body_lines"):
                lines_file = Path(job["body_lines"])
            else:
                lines_file = self.workdir / f"body-{abs(hash(job['body']))}.jsonl"
                lines_file.write_text(job["body"] + "\n")
            mode = "body"
        else:
            parsed = urllib.parse.urlsplit(base)
            lines_file = self.workdir / f"path-{abs(hash(base))}.paths"
            lines_file.write_text(parsed.path + ("?" + parsed.query if parsed.query else "") + "\n")
            mode = "path"
        header = job.get("headers", [""])[0] if job.get("headers") else ""
        return [self.binary, "-t", str(threads), "-c", str(job["conns"]), "-d", f"{job['duration']}s",
                "--timeout", "120s", "-s", str(self.script), base, "--",
                job.get("method", "GET"), mode, str(lines_file), header]

    def parse(self, stdout: str, job: dict) -> dict:
        line = next((ln for ln in stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise BenchError("wrk printed no summary")
        data = json.loads(line[len("BENCH_JSON "):])
        conn = {k: data[k] for k in ("connect", "read", "write", "timeout") if data[k]}
        res = summarize_statuses({str(k): int(v) for k, v in data["statuses"].items()}, conn,
                                 tuple(job.get("also_ok", ())))
        wall = data["duration_us"] / 1e6
        res.update({
            "wall_s": wall,
            "p50_ms": data["p50"] / 1000, "p99_ms": data["p99"] / 1000, "p999_ms": data["p999"] / 1000,
            "max_ms": data["max"] / 1000,
            "bytes_per_answer": (data["bytes"] // max(data["requests"], 1)) if data.get("requests") else None,
            "ok_per_s": res["ok"] / wall if wall else 0.0,
            "req_per_s": res["requests"] / wall if wall else 0.0,
            "in_flight_slack": job["conns"],
        })
        return res
