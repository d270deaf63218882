"""The bench's small clients: HTTP to the service, SQL through the mariadb client, commands
through redis-cli, and what they read that every part needs (the consumer's backlog, Redis's
record of its stalls)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from .common import ROOT, BenchError


class Clients:
    """Mixed into Bench; uses its base (the service's URL), out, db, redis, prefix, a (the
    arguments), warehouses and stores."""

    def http(self, method: str, path: str, body=None, token: str | None = None, timeout=300):
        status, _, raw = self.http_full(method, path, body, token, timeout=timeout)
        return status, raw

    def http_full(self, method: str, path: str, body=None, token: str | None = None,
                  headers: dict[str, str] | None = None, timeout=300):
        """Status, headers (lower-case names) and body of one request; `path` may be a full URL."""
        data = json.dumps(body).encode() if body is not None else None
        url = path if path.startswith("http") else self.base + path
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        if token:
            req.add_header("authorization", f"Bearer {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def http_json(self, method, path, body=None, token=None, expect=(200,)):
        status, raw = self.http(method, path, body, token)
        if status not in expect:
            raise BenchError(f"{method} {path}: HTTP {status}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def service_log_size(self) -> int:
        try:
            return (self.out / "service.log").stat().st_size
        except OSError:
            return 0

    def sql(self, query: str) -> list[list[str]]:
        env = dict(os.environ, MYSQL_PWD=self.db["password"])
        p = subprocess.run(
            [self.a.mariadb_client, "--no-defaults", "--protocol=tcp", "-h", self.db["host"],
             "-P", self.db["port"], "-u", self.db["user"], "--batch", "--skip-column-names",
             self.db["name"], "-e", query],
            capture_output=True, text=True, env=env, timeout=600)
        if p.returncode != 0:
            raise BenchError(f"SQL failed: {query}: {p.stderr.strip()}")
        return [ln.split("\t") for ln in p.stdout.splitlines()]

    def redis_cmd(self, *args: str, as_json: bool = False) -> str:
        cmd = [self.a.redis_cli, "--no-auth-warning", "-h", self.redis["host"], "-p", self.redis["port"],
               "-n", self.redis["db"]] + (["--json"] if as_json else [])
        if self.redis["password"]:
            cmd += ["-a", self.redis["password"]]
        p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise BenchError(f"redis-cli {args[0]} failed: {p.stderr.strip()}")
        return p.stdout.strip()

    def redis_forks(self) -> int | None:
        """Background saves/AOF rewrites Redis has forked so far (INFO stats total_forks)."""
        try:
            for line in self.redis_cmd("INFO", "stats").splitlines():
                if line.startswith("total_forks:"):
                    return int(line.split(":", 1)[1])
        except BenchError:
            pass
        return None

    def redis_stalls_start(self) -> None:
        """Starts Redis's own record of its stalls for one load: the latency monitor (events of
        5 ms or more: expiry cycles, fsyncs, forks, commands) and the slow log (commands of 2 ms or
        more), both emptied first."""
        try:
            self.redis_cmd("CONFIG", "SET", "latency-monitor-threshold", "5",
                           "slowlog-log-slower-than", "2000", "slowlog-max-len", "1024")
            self.redis_cmd("LATENCY", "RESET")
            self.redis_cmd("SLOWLOG", "RESET")
        except BenchError:
            pass

    def redis_stalls(self, raw: Path) -> dict | None:
        """What Redis recorded since redis_stalls_start: the longest stall of each latency-monitor
        event (ms), and the slow commands by name (a script by its file under persistence/lua),
        with how many there were and the longest (ms). Both replies are written to `raw`."""
        try:
            latest = json.loads(self.redis_cmd("LATENCY", "LATEST", as_json=True) or "[]")
            slow = json.loads(self.redis_cmd("SLOWLOG", "GET", "1024", as_json=True) or "[]")
        except (BenchError, ValueError):
            return None
        raw.write_text(json.dumps({"latency_latest": latest, "slowlog": slow}) + "\n")
        # LATENCY LATEST: [event, unix time, latest ms, max ms] per event.
        events = {e[0]: e[3] for e in latest if len(e) >= 4}
        scripts = {hashlib.sha1(f.read_bytes()).hexdigest(): f.name
                   for f in (ROOT / "persistence" / "lua").glob("*.lua")}
        commands: dict[str, dict] = {}
        # SLOWLOG GET: [id, unix time, microseconds, arguments, client, name] per command.
        for entry in slow:
            if len(entry) < 4 or not entry[3]:
                continue
            args = entry[3]
            name = str(args[0]).upper()
            if name in ("EVALSHA", "EVAL") and len(args) > 1:
                name = scripts.get(str(args[1]), name)
            c = commands.setdefault(name, {"count": 0, "max_ms": 0.0})
            c["count"] += 1
            c["max_ms"] = max(c["max_ms"], round(entry[2] / 1000, 1))
        return {"latency_max_ms": events, "slow_commands": commands}

    def metrics(self) -> dict[str, float]:
        status, raw = self.http("GET", "/metrics", timeout=30)
        if status != 200:
            raise BenchError(f"/metrics: HTTP {status}")
        out = {}
        for line in raw.decode().splitlines():
            if line.startswith("stockflow_cluster_consumer_backlog"):
                name, _, val = line.partition(" ")
                out[name] = float(val)
        return out

    # Events accepted in Redis and not yet persisted: the streams' lengths (the consumer deletes
    # an event once MySQL holds it). Read from Redis itself, not from the service's
    # stockflow_cluster_consumer_backlog_events gauge, which is refreshed every 2 s: a stale 0
    # read right after a load would end the wait before the consumer did, and "confirmed after"
    # would be 2 s coarse.
    BACKLOG_LUA = "local n = 0 for _, k in ipairs(KEYS) do n = n + redis.call('XLEN', k) end return n"

    def backlog(self) -> int:
        keys = [f"{self.prefix}{{L{loc}}}:ev" for loc, _, _ in self.warehouses + self.stores]
        try:
            return int(self.redis_cmd("EVAL", self.BACKLOG_LUA, str(len(keys)), *keys))
        except (BenchError, ValueError):
            return -1

    def wait_backlog(self, limit_s: float) -> float | None:
        """Seconds until no accepted event waits for MySQL (polled every 50 ms), None past limit_s."""
        t0 = time.monotonic()
        while True:
            if self.backlog() == 0:
                return time.monotonic() - t0
            if time.monotonic() - t0 > limit_s:
                return None
            time.sleep(0.05)

    def delete_prefix(self, prefix: str) -> int:
        """Deletes every key under `prefix` (SCAN 10,000 at a time, then UNLINK in batches through
        one redis-cli); answers how many."""
        keys: set[str] = set()
        cursor = "0"
        while True:
            out = self.redis_cmd("SCAN", cursor, "MATCH", f"{prefix}*", "COUNT", "10000").split()
            if not out:
                raise BenchError(f"SCAN {prefix}*: empty answer")
            cursor = out[0]
            keys.update(out[1:])
            if cursor == "0":
                break
        ordered = sorted(keys)
        batches = ["UNLINK " + " ".join(ordered[i:i + 500]) for i in range(0, len(ordered), 500)]
        if batches:
            cmd = [self.a.redis_cli, "--no-auth-warning", "-h", self.redis["host"], "-p", self.redis["port"],
                   "-n", self.redis["db"]] + (["-a", self.redis["password"]] if self.redis["password"] else [])
            p = subprocess.run(cmd, input="\n".join(batches) + "\n", capture_output=True, text=True,
                               timeout=600)
            if p.returncode != 0:
                raise BenchError(f"redis-cli UNLINK {prefix}*: {p.stderr.strip()}")
        return len(ordered)
