"""`make bench`: N concurrent streaming completions through one Combo process.

What runs, all on 127.0.0.1:

  - the fake OpenAI-compatible upstream (tests.fakes.openai_server) as its own
    process: every answer is `--tokens` tokens, `--interval` seconds apart;
  - the real server as `make run` starts it (one daphne process serving
    combo.asgi, embedded defaults: SQLite, in-memory layers) on a fresh data
    folder with a user, API keys and an agent whose provider is the
    OpenAI-compatible one with model "fake"; a fresh server for every N;
  - the load generator (bench/loadgen.py), one or two processes of raw
    asyncio sockets, each stream on its own connection.

For every N it first streams N answers straight from the upstream (the
baseline), then N through Combo, with the same client, and reports: errors,
time to the first event carrying answer text (TTFE) for both and what Combo
adds, the p99 gap between two events of a stream, events and tokens per
second, and the server's peak RSS (VmHWM). Every stream is checked: HTTP 200,
text/event-stream, ends with `event: done` (`[DONE]` upstream), no error
event, and the concatenated answer equals the expected text.

`--backend postgres --processes P` measures the production deployment
instead: `manage.py serve --workers P` (P daphne processes sharing one socket)
on PostgreSQL + Redis, a fresh database and a flushed Redis database for every
round. Server CPU and peak RSS are then summed over serve's whole process
tree, and a thread samples the round's PostgreSQL connections
(pg_stat_activity) every 100 ms.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.backends import POSTGRES, FreshPostgres, postgres_unreachable  # noqa: E402
from combo.server import daphne_command  # noqa: E402  (no Django import)
from tests.fakes.openai_server import answer_tokens  # noqa: E402  (stdlib only)

PY = sys.executable
UPSTREAM_KEY = "sk-bench-upstream"
APPS = {"combo": "combo.asgi:application", "floor": "bench.floor:application", "proxy": "bench.proxy:application"}

# Targets from issue 3, for one server process on a 2-core machine.
TARGETS = {
    "errors_at_1000": 0,
    "added_p50_ms_at_50": 10.0,
    "added_p50_ms_at_500": 100.0,
    "added_p99_ms_at_500": 1000.0,
    "gap_p99_ms_at_500": 100.0,
    "rss_mib_at_1000": 300.0,
}


# --- helpers ------------------------------------------------------------------

def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmHWM:", "VmRSS:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all processes have used (every core), from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (from the ppid field of every /proc/<pid>/stat)."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children[ppid].append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_by_pid(pids) -> dict[int, float]:
    """CPU seconds of each process still alive."""
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            pass
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two cpu_by_pid() readings (a process born in between counts from 0)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def pids_matching(predicate) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and predicate(cmdline(int(e)))]


def listener_inodes(port: int) -> set[str]:
    """Socket inodes listening on `port` (from /proc/net/tcp, tcp6)."""
    inodes = set()
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def accepts_on(pid: int, inodes: set[str]) -> bool:
    """Whether process `pid` polls one of these listening sockets (its event loop accepts from it)."""
    sockets, epolls = set(), []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                sockets.add(fd)
            elif target == "anon_inode:[eventpoll]":
                epolls.append(fd)
        for fd in epolls:
            with open(f"/proc/{pid}/fdinfo/{fd}") as info:
                if any(line.startswith("tfd:") and line.split()[1] in sockets for line in info):
                    return True
    except OSError:
        pass
    return False


def wait_for_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (up to `max_wait` s) until the machine's CPU use stays under `threshold` cores for 2 s.

    Between rounds the benchmark's own processes are idle, so what is busy is
    someone else. Returns the load (cores) of the last window.
    """
    deadline = time.monotonic() + max_wait
    quiet_windows, load = 0, 0.0
    while True:
        busy = machine_busy_seconds()
        time.sleep(0.5)
        load = (machine_busy_seconds() - busy) / 0.5
        quiet_windows = quiet_windows + 1 if load < threshold else 0
        if quiet_windows >= 4 or time.monotonic() >= deadline:
            if quiet_windows < 4:
                log(f"the machine is still busy ({load:.2f} cores used by others); starting anyway")
            return load


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


# --- the processes ------------------------------------------------------------

class Upstream:
    def __init__(self, tokens: int, interval: float) -> None:
        self.process = subprocess.Popen(
            [PY, "-m", "tests.fakes.openai_server", "--host", "127.0.0.1", "--port", "0",
             "--tokens", str(tokens), "--interval", str(interval)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "READY":
            self.stop()
            raise RuntimeError(f"the fake upstream did not start (said {line!r})")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Server:
    """The server under test.

    `daphne` (and `uvicorn`): one process serving the app on its own port, as
    `make run` starts it. `serve`: `manage.py serve --workers P --no-worker`,
    the way production runs it: P daphne processes sharing one listening socket.
    """

    def __init__(self, env: dict[str, str], data_dir: Path, label: str, server: str = "daphne",
                 app: str = "combo", processes: int = 1) -> None:
        self.port = free_port()
        self.server = server
        self.processes = processes
        self.log_path = data_dir / f"{server}-{app}-{label}.log"
        self._log = open(self.log_path, "wb")
        application = APPS[app]
        if server == "serve":
            command = [PY, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                       "--workers", str(processes), "--no-worker", "-v", "0"]
        elif server == "daphne":
            # As `manage.py serve` runs it (access log to stdout included).
            command = daphne_command("127.0.0.1", self.port, application=application)
        else:  # for comparison only; the product is served by daphne
            command = [PY, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port),
                       "--backlog", "4096", application]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        self._started = set()
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{server} exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v1/health", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # 503 is an answer too
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{server} did not start in 60 s") from None
                time.sleep(0.1)
        if server == "serve":
            self._wait_for_all_workers(deadline)
        self.ready_cpu = self.cpu()

    def _wait_for_all_workers(self, deadline: float) -> None:
        """Until each of the P daphne processes accepts from the shared socket.

        The first one answering /v1/health says nothing about the others; a
        process still importing would leave its share of a burst to the rest.
        """
        inodes = listener_inodes(self.port)
        ready = []
        while time.monotonic() < deadline:
            ready = [pid for pid in self.daphne_pids() if accepts_on(pid, inodes)]
            if len(ready) >= self.processes:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log()[-2000:]}")
            time.sleep(0.1)
        log(f"only {len(ready)} of {self.processes} server processes accept connections after 60 s; going on")

    def pids(self) -> list[int]:
        """The server's processes: the one process, or serve and all its descendants."""
        if self.server != "serve":
            return [self.pid]
        tree = process_tree(self.pid)
        self._started.update(tree)
        return tree

    def daphne_pids(self) -> list[int]:
        return [pid for pid in self.pids()[1:] if "combo.server" in cmdline(pid)]

    def cpu(self) -> dict[int, float]:
        return cpu_by_pid(self.pids())

    def peak_rss_by_process(self) -> list[int]:
        """VmHWM (KiB) of each of the server's processes."""
        out = []
        for pid in self.pids():
            try:
                out.append(proc_status(pid)["VmHWM"])
            except (OSError, KeyError):
                pass
        return out

    def peak_rss_kib(self) -> int:
        """VmHWM of the process, or the sum of every process's VmHWM in serve's tree."""
        return sum(self.peak_rss_by_process())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.server == "serve":
            self.pids()  # remember the children, to check they all stop
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                # serve gives its daphne processes their shutdown grace + 10 s.
                self.process.wait(timeout=40 if self.server == "serve" else 20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        # With serve, SIGTERM must have stopped every child too.
        left = [pid for pid in self._started - {self.pid} if "combo.server" in cmdline(pid)
                or "db_worker" in cmdline(pid)]
        if left:
            log(f"server processes {left} outlived serve; killing them")
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def prepare_data(key_count: int) -> None:
    """(In a child process with the bench's environment.) Print the keys and the agent."""
    import django

    django.setup()
    from accounts import services as accounts
    from agents import services as agents

    user = accounts.user_create(username="bench")
    keys = [accounts.api_key_create(owner=user, name=f"bench {i}").plain_key for i in range(key_count)]
    agent = agents.agent_create(owner=user, name="Bench", llm_provider="openai", llm_model="fake")
    print(json.dumps({"keys": keys, "agent_id": str(agent.id)}))


def prepare(env: dict[str, str], key_count: int) -> dict:
    """Migrate the database `env` points at and create the bench's user, keys and agent."""
    manage(env, "migrate", "--noinput", "-v", "0")
    return json.loads(
        subprocess.run(
            [PY, str(ROOT / "bench" / "run.py"), "--prepare-data", str(key_count)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=120,
        ).stdout
    )


# --- the production backend: PostgreSQL + Redis ---------------------------------

class ConnectionSampler(threading.Thread):
    """Counts the connections to one database (pg_stat_activity) every `interval` s, from its own connection.

    That connection is to the `postgres` database, so it does not count itself.
    """

    def __init__(self, database: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        import psycopg

        self.database = database
        self.interval = interval
        self.conn = psycopg.connect(f"{POSTGRES}/postgres", autocommit=True)
        self.first = self.count()
        self.peak = self.first
        self.samples = 1
        self._stopping = threading.Event()

    def count(self) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)
        ).fetchone()[0]

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.peak = max(self.peak, self.count())
            self.samples += 1

    def finish(self) -> int:
        self._stopping.set()
        self.join()
        self.peak = max(self.peak, self.count())
        self.conn.close()
        return self.peak


def backend_cpu(database: str) -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends serving `database`, and of redis-server (shared: approximate)."""
    pids = pids_matching(lambda line: (line.startswith("postgres: ") and f" {database} " in line)
                         or line.startswith("redis-server"))
    return cpu_by_pid(pids)


# --- one round: N streams through the load generator ---------------------------------

def http_request(port: int, path: str, body: dict, key: str) -> str:
    data = json.dumps(body, separators=(",", ":"))
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"Content-Length: {len(data.encode())}\r\n"
        "Connection: close\r\n\r\n"
    )
    return (head + data).encode("utf-8").decode("latin-1")


def build_jobs(mode: str, n: int, port: int, setup: dict, tokens: int, tag: str) -> list[dict]:
    jobs = []
    keys = setup["keys"]
    for i in range(n):
        question = f"bench {tag} question {i}"
        expected = "".join(answer_tokens(question, tokens))
        if mode == "combo":
            request = http_request(
                port,
                f"/v1/combo/agents/{setup['agent_id']}/completions",
                {"question": question, "stream": True},
                keys[i % len(keys)],
            )
        else:
            request = http_request(
                port,
                "/v1/chat/completions",
                {
                    "model": "fake",
                    "messages": [{"role": "user", "content": question}],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                UPSTREAM_KEY,
            )
        jobs.append({"request": request, "expected": expected})
    return jobs


def run_round(mode: str, n: int, port: int, setup: dict, tokens: int, clients: int, timeout: float,
              tag: str) -> dict:
    jobs = build_jobs(mode, n, port, setup, tokens, tag)
    clients = max(1, min(clients, n))
    workers = []
    for index in range(clients):
        process = subprocess.Popen(
            [PY, str(ROOT / "bench" / "loadgen.py")],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        config = {"mode": mode, "port": port, "timeout": timeout, "jobs": jobs[index::clients]}
        process.stdin.write(json.dumps(config) + "\n")
        process.stdin.flush()
        workers.append(process)
    for process in workers:
        if process.stdout.readline().strip() != "READY":
            raise RuntimeError("a load generator did not start")
    for process in workers:
        process.stdin.write("GO\n")
        process.stdin.flush()
    outputs = []
    for process in workers:
        out, _ = process.communicate(timeout=timeout + 60)
        if process.returncode != 0:
            raise RuntimeError(f"a load generator failed ({process.returncode})")
        outputs.append(json.loads(out))
    streams = [s for out in outputs for s in out["streams"]]
    started = min(out["started"] for out in outputs)
    result = summarize(streams, started, tokens)
    result["client_cpu_s"] = sum(out["cpu_s"] for out in outputs)
    return result


def warm_every_process(server: Server, setup: dict, tokens: int, timeout: float, n: int) -> None:
    """More 4-stream warm-ups until every daphne process has served some (at most 10).

    The kernel hands a connection to whichever process accepts first, so one
    warm-up may reach only one of them, and the first request a process serves
    costs ~0.5 s of lazy set-up that would then land in the measured round.
    A process that served nothing has used next to no CPU since it started.
    """
    for attempt in range(11):
        now = server.cpu()
        cold = [pid for pid in server.daphne_pids() if now.get(pid, 0.0) - server.ready_cpu.get(pid, 0.0) < 0.05]
        if not cold:
            return
        if attempt < 10:
            run_round("combo", 4, server.port, setup, tokens, 1, timeout, f"warm{n}-{attempt}")
    log(f"N={n}: server processes {cold} still served nothing after 10 more warm-ups")


def summarize(streams: list[dict], started: float, tokens: int) -> dict:
    good = [s for s in streams if s["error"] is None]
    reasons = collections.Counter(s["error"] for s in streams if s["error"] is not None)
    ttfe = [s["ttfe"] * 1000 for s in good]
    gaps = [g * 1000 for s in good for g in s["gaps"]]
    ends = [s["end"] for s in good if s["end"]]
    duration = (max(ends) - started) if ends else None
    events = sum(s["events"] for s in good)
    return {
        "streams": len(streams),
        "errors": len(streams) - len(good),
        "error_samples": reasons.most_common(5),
        "ttfe_p50_ms": percentile(ttfe, 0.50),
        "ttfe_p99_ms": percentile(ttfe, 0.99),
        "ttfe_max_ms": max(ttfe) if ttfe else None,
        "gap_p50_ms": percentile(gaps, 0.50),
        "gap_p99_ms": percentile(gaps, 0.99),
        "gap_max_ms": max(gaps) if gaps else None,
        "events": events,
        "duration_s": duration,
        "events_per_s": events / duration if duration else None,
        "tokens_per_s": len(good) * tokens / duration if duration else None,
    }


# --- the whole benchmark ------------------------------------------------------------

def bench_one(n: int, args, env: dict, data_dir: Path, setup: dict | None, upstream: Upstream) -> dict:
    if args.backend == "postgres":
        with FreshPostgres() as database:
            round_env = {**env, **database.env}
            started = time.monotonic()
            setup = prepare(round_env, args.keys)
            log(f"N={n}: database {database.name} migrated and filled in {time.monotonic() - started:.1f} s")
            return measure(n, args, round_env, data_dir, setup, upstream, database.name)
    return measure(n, args, env, data_dir, setup, upstream, None)


def measure(n: int, args, env: dict, data_dir: Path, setup: dict, upstream: Upstream,
            database: str | None) -> dict:
    clients = args.clients or (1 if n < 200 else 2)
    timeout = 30 + args.tokens * args.interval * 4 + n * 0.02
    production = args.backend == "postgres" or args.processes > 1
    server = Server({**env, "BENCH_FLOOR_TOKENS": str(args.tokens), "BENCH_FLOOR_INTERVAL": str(args.interval)},
                    data_dir, f"n{n}", "serve" if production else args.server, args.app, args.processes)
    pg_conns = pg_conns_before = pg_samples = sampler = None
    backend_used = 0.0
    try:
        # Warm-up: lazy imports, the upstream pool, the first queries. With
        # --warm, a whole unmeasured burst of N first: the measured one then
        # finds N pooled upstream connections, as a busy server would.
        warm = run_round("combo", n if args.warm else 4, server.port, setup, args.tokens,
                         clients if args.warm else 1, timeout, f"warm{n}")
        if warm["errors"]:
            raise RuntimeError(f"warm-up failed: {warm['error_samples']}")
        if production:
            warm_every_process(server, setup, args.tokens, timeout, n)
        direct = None
        if not args.skip_direct:
            run_round("direct", 4, upstream.port, setup, args.tokens, 1, timeout, f"warmd{n}")
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait)
            direct = run_round("direct", n, upstream.port, setup, args.tokens, clients, timeout, f"d{n}")
            time.sleep(0.5)
        if args.quiet_wait:
            wait_for_quiet(args.quiet_wait)
        sampler = ConnectionSampler(database) if database else None
        if sampler:
            sampler.start()
            backend_before = backend_cpu(database)
        cpu_before = server.cpu()
        upstream_before = cpu_seconds(upstream.process.pid)
        busy_before, wall_before = machine_busy_seconds(), time.monotonic()
        combo = run_round("combo", n, server.port, setup, args.tokens, clients, timeout, f"c{n}")
        busy, wall = machine_busy_seconds() - busy_before, time.monotonic() - wall_before
        cpu_after = server.cpu()
        cpu = cpu_delta(cpu_before, cpu_after)
        upstream_cpu = cpu_seconds(upstream.process.pid) - upstream_before
        if sampler:
            backend_used = cpu_delta(backend_before, backend_cpu(database))
            pg_conns, pg_conns_before, pg_samples = sampler.finish(), sampler.first, sampler.samples
            sampler = None
        peak_rss_kib = server.peak_rss_kib()
        process_rss = [round(kib / 1024, 1) for kib in server.peak_rss_by_process()] if production else None
        process_cpu = [round(cpu_after[pid] - cpu_before.get(pid, 0.0), 2) for pid in server.daphne_pids()
                       if pid in cpu_after] if production else None
    finally:
        try:
            if sampler:
                sampler.finish()
        finally:
            server.stop()
    text = server.log()
    problems = [line for line in text.splitlines() if "Traceback" in line or " ERROR " in line]
    result = {
        "n": n,
        "clients": clients,
        "combo": combo,
        "direct": direct,
        "server_cpu_s": cpu,
        "server_cpu_pct": 100 * cpu / combo["duration_s"] if combo["duration_s"] else None,
        "server_process_cpu_s": process_cpu,
        "upstream_cpu_s": upstream_cpu,
        "client_cpu_s": combo["client_cpu_s"],
        "backend_cpu_s": backend_used,
        # Whatever else ran on the machine during the round (other users,
        # test suites): the benchmark cannot control it, so it reports it.
        "other_cpu_cores": max(0.0, busy - cpu - upstream_cpu - combo["client_cpu_s"] - backend_used) / wall,
        "peak_rss_mib": peak_rss_kib / 1024,
        "server_process_rss_mib": process_rss,  # serve, then each child
        "pg_conns_peak": pg_conns,
        "pg_conns_before": pg_conns_before,
        "pg_conns_samples": pg_samples,
        "database_locked": text.count("database is locked"),
        "server_log_problems": len(problems),
        "server_log_sample": problems[:3],
    }
    if direct is not None:
        for q in ("p50", "p99"):
            a, b = combo[f"ttfe_{q}_ms"], direct[f"ttfe_{q}_ms"]
            result[f"added_{q}_ms"] = (a - b) if a is not None and b is not None else None
    return result


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def table(results: list[dict]) -> str:
    lines = [
        "| N | errors | TTFE p50 ms: Combo / direct / added | TTFE p99 ms: Combo / direct / added "
        "| p99 gap ms: Combo / direct | events/s | tokens/s | server CPU | peak RSS MiB | peak PG conns |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        c, d = r["combo"], r["direct"] or {}
        lines.append(
            f"| {r['n']} | {c['errors']} "
            f"| {fmt(c['ttfe_p50_ms'])} / {fmt(d.get('ttfe_p50_ms'))} / **{fmt(r.get('added_p50_ms'))}** "
            f"| {fmt(c['ttfe_p99_ms'])} / {fmt(d.get('ttfe_p99_ms'))} / **{fmt(r.get('added_p99_ms'))}** "
            f"| {fmt(c['gap_p99_ms'])} / {fmt(d.get('gap_p99_ms'))} "
            f"| {fmt(c['events_per_s'], 0)} | {fmt(c['tokens_per_s'], 0)} "
            f"| {fmt(r['server_cpu_pct'], 0)}% | {fmt(r['peak_rss_mib'])} | {fmt(r.get('pg_conns_peak'), 0)} |"
        )
    return "\n".join(lines)


def verdicts(results: list[dict]) -> list[str]:
    by_n = {r["n"]: r for r in results}
    out = []

    def check(n: int, label: str, value, limit: float, inclusive: bool = False) -> None:
        if n not in by_n or value is None:
            return
        ok = value <= limit if inclusive else value < limit
        out.append(f"- N={n}: {label} = {fmt(value)} (target {'≤' if inclusive else '<'} {limit:g}): "
                   f"{'met' if ok else 'MISSED'}")

    if 1000 in by_n:
        check(1000, "errors", by_n[1000]["combo"]["errors"], 0, inclusive=True)
        check(1000, "peak RSS MiB", by_n[1000]["peak_rss_mib"], TARGETS["rss_mib_at_1000"])
    if 50 in by_n:
        check(50, "added TTFE p50 ms", by_n[50].get("added_p50_ms"), TARGETS["added_p50_ms_at_50"])
    if 500 in by_n:
        check(500, "added TTFE p50 ms", by_n[500].get("added_p50_ms"), TARGETS["added_p50_ms_at_500"])
        check(500, "added TTFE p99 ms", by_n[500].get("added_p99_ms"), TARGETS["added_p99_ms_at_500"])
        check(500, "p99 gap ms", by_n[500]["combo"]["gap_p99_ms"], TARGETS["gap_p99_ms_at_500"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="1,50,500,1000", help="comma-separated concurrency levels")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between tokens")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument("--clients", type=int, default=0, help="load-generator processes (default: 1 below N=200, else 2)")
    parser.add_argument("--keys", type=int, default=64, help="API keys the requests are spread over")
    parser.add_argument("--skip-direct", action="store_true", help="do not measure the upstream baseline")
    parser.add_argument("--server", choices=["daphne", "uvicorn"], default="daphne",
                        help="the ASGI server (the product uses daphne; uvicorn is for comparison)")
    parser.add_argument("--app", choices=sorted(APPS), default="combo",
                        help="combo (the product), floor (bench/floor.py: the same stream with none of Combo's "
                             "work, to measure the server itself) or proxy (bench/proxy.py: a minimal hand-rolled "
                             "Starlette proxy of the upstream, the yardstick of issue 3; needs starlette)")
    parser.add_argument("--warm", action="store_true",
                        help="before each measured burst, run one unmeasured burst of N on the same server "
                             "(steady state: a pooled upstream connection per stream)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder and server logs")
    parser.add_argument("--quiet-wait", type=float, default=60, metavar="SECONDS",
                        help="before each round, wait up to this long for other processes to leave the CPU "
                             "alone (under 0.3 cores for 2 s); 0 to start at once")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each N this many times (fresh server each) and keep the run with the "
                             "least CPU used by other processes")
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite",
                        help="sqlite: the embedded defaults (SQLite, in-memory layers); postgres: the production "
                             "backend, PostgreSQL + Redis (BENCH_POSTGRES_URL, BENCH_REDIS_URL), a fresh database "
                             "for every round")
    parser.add_argument("--processes", type=int, default=1, metavar="P",
                        help="server processes; above 1 (or with --backend postgres) the server is started as "
                             "production runs it, `manage.py serve --workers P --no-worker`")
    parser.add_argument("--prepare-data", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.prepare_data is not None:
        prepare_data(args.prepare_data)
        return 0

    levels = [int(x) for x in args.n.split(",") if x.strip()]
    if not levels or any(n < 1 or n > 5000 for n in levels):
        parser.error("--n takes levels between 1 and 5000")
    if args.tokens < 1 or args.tokens > 10000 or not 0 <= args.interval <= 10:
        parser.error("--tokens must be 1..10000 and --interval 0..10")
    if not 1 <= args.processes <= 64:
        parser.error("--processes takes 1..64")
    production = args.backend == "postgres" or args.processes > 1
    if production and (args.server != "daphne" or args.app != "combo"):
        parser.error("--server uvicorn and --app floor or proxy run one process on SQLite only")
    if args.app == "proxy" or args.server == "uvicorn":
        import importlib.util

        for needed in ["starlette", "httpx"] if args.app == "proxy" else []:
            if importlib.util.find_spec(needed) is None:
                parser.error(f"--app proxy needs {needed} (bench/README.md: install it beside, with PYTHONPATH)")
        if args.server == "uvicorn" and importlib.util.find_spec("uvicorn") is None:
            parser.error("--server uvicorn needs uvicorn (bench/README.md: install it beside, with PYTHONPATH)")
    if args.backend == "postgres":
        reason = postgres_unreachable()
        if reason:
            print(f"--backend postgres: {reason}; nothing measured.")
            return 0

    data_dir = Path(tempfile.mkdtemp(prefix="combo-bench-"))
    upstream = Upstream(args.tokens, args.interval)
    results = []
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "combo.settings",
            "COMBO_DATA_DIR": str(data_dir),
            "COMBO_LLM_BASE_URL": f"http://127.0.0.1:{upstream.port}/v1",
            "COMBO_LLM_API_KEY": UPSTREAM_KEY,
            "COMBO_LLM_MODEL": "fake",
            "COMBO_RATELIMIT_COMPLETIONS": "1000000",
            "PYTHONUNBUFFERED": "1",
        }
        log(f"data folder {data_dir}; upstream on port {upstream.port}")
        # SQLite: one database for the whole run; PostgreSQL: a fresh one per round (bench_one).
        setup = prepare(env, args.keys) if args.backend == "sqlite" else None
        for n in levels:
            log(f"N={n} ...")
            runs = [bench_one(n, args, env, data_dir, setup, upstream) for _ in range(max(1, args.repeat))]
            result = min(runs, key=lambda r: r["other_cpu_cores"])
            result["runs"] = len(runs)
            results.append(result)
            c = result["combo"]
            log(f"N={n}: errors {c['errors']}, TTFE p50 {fmt(c['ttfe_p50_ms'])} ms "
                f"(added {fmt(result.get('added_p50_ms'))}), p99 {fmt(c['ttfe_p99_ms'])} ms "
                f"(added {fmt(result.get('added_p99_ms'))}), gap p99 {fmt(c['gap_p99_ms'])} ms, "
                f"RSS {fmt(result['peak_rss_mib'])} MiB"
                + (f", PostgreSQL connections {result['pg_conns_before']} before, peak {result['pg_conns_peak']}"
                   if result["pg_conns_peak"] is not None else ""))
    finally:
        upstream.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)

    info = machine()
    backend = "PostgreSQL + Redis" if args.backend == "postgres" else "SQLite (in-memory layers)"
    processes = f"{args.processes} server process{'es' if args.processes > 1 else ''}"
    if production:
        server = (f"server `manage.py serve --workers {args.processes}` ({processes}; server CPU and peak RSS "
                  "summed over serve and all its child processes, peak RSS = the sum of each one's VmHWM)")
    else:
        server = f"server {args.server} ({processes})"
    print(f"\nCombo streaming benchmark, {info['date']}: {info['cpus']} CPUs ({info['cpu_model']}), "
          f"Python {info['python']}, backend {backend}, {server}, app {args.app}{', warm' if args.warm else ''}; "
          f"{args.tokens} tokens {args.interval * 1000:g} ms apart; TTFE = time to the first event carrying "
          "answer text.\n")
    print(table(results))
    # The targets of issue 3 are for one process on the embedded backend.
    lines = verdicts(results) if args.processes == 1 and args.backend == "sqlite" else []
    if lines:
        print("\nTargets (issue 3):")
        print("\n".join(lines))
    for r in results:
        for side in ("combo", "direct"):
            part = r[side]
            if part and part["errors"]:
                print(f"\nN={r['n']} {side}: {part['errors']} errors; samples:")
                for reason, count in part["error_samples"]:
                    print(f"  {count} x {reason}")
        if r["database_locked"] or r["server_log_problems"]:
            print(f"\nN={r['n']}: server log: {r['database_locked']} 'database is locked', "
                  f"{r['server_log_problems']} error lines, e.g. {r['server_log_sample']}")

    def cpu_line(r: dict) -> str:
        server = f"server {r['server_cpu_s']:.2f}"
        if r["server_process_cpu_s"] is not None:
            server += f" (daphne processes {' + '.join(f'{c:.2f}' for c in r['server_process_cpu_s'])})"
        backend = (f", PostgreSQL (this database's backends) + Redis {r['backend_cpu_s']:.2f}"
                   if args.backend == "postgres" else "")
        return (f"N={r['n']}: {server}, upstream {r['upstream_cpu_s']:.2f}, clients {r['client_cpu_s']:.2f}"
                f"{backend}, other processes {r['other_cpu_cores']:.2f} cores")

    print("\nCPU during each Combo round (seconds; one core = 1 s per second): "
          + "; ".join(cpu_line(r) for r in results))
    if production:
        print("\nPeak RSS of each server process (MiB; serve first, then its children): "
              + "; ".join(f"N={r['n']}: {' + '.join(f'{m:.1f}' for m in r['server_process_rss_mib'])}"
                          for r in results))
    if args.backend == "postgres":
        pool = os.environ.get("DB_POOL_MAX", "20")
        print("\nPostgreSQL connections to the round's database (pg_stat_activity, sampled every 100 ms "
              f"during the Combo round; psycopg pool of at most {pool} per process): "
              + "; ".join(f"N={r['n']}: {r['pg_conns_before']} before, peak {r['pg_conns_peak']}" for r in results))
    if args.keep:
        print(f"\nData folder and logs kept in {data_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
