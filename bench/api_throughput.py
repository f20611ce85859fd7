"""Authenticated API throughput against a bare Django view, at 1, 2 and 4 processes.

Starts the product with `manage.py serve --workers P` (daphne processes sharing
one socket) and drives it with wrk (Debian's `wrk` package) on 127.0.0.1:

- `GET /v1/combo/agents` with an API key: authentication, rate limiting (with a
  ceiling raised out of the way, so it still counts every request), the envelope;
- `GET /bench/bare-agents`: the same query and JSON with none of that.

Embedded defaults (SQLite, in-process cache) at 1 process, then PostgreSQL +
Redis at 1, 2 and 4 processes when they are reachable (the deployment that
scales out). Prints a Markdown table.

    .venv/bin/python bench/api_throughput.py [--seconds 10] [--connections 32]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.backends import FreshPostgres, postgres_unreachable  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


def wrk(url: str, seconds: int, connections: int, headers: dict[str, str]) -> dict:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "bad": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
    }


def median_run(runs: list[dict]) -> dict:
    """The run with the median requests/s, its non-2xx count summed over all runs."""
    ordered = sorted(runs, key=lambda run: run["rps"])
    return {**ordered[len(ordered) // 2], "bad": sum(run["bad"] for run in runs)}


def run_config(label: str, env_extra: dict, processes: int, seconds: int, connections: int,
               rounds: int = 3) -> dict:
    data_dir = tempfile.mkdtemp(prefix="combo-bench-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "COMBO_DATA_DIR": data_dir,
        "COMBO_RATELIMIT_DEFAULT": "1000000000",
        "LOG_LEVEL": "WARNING",
        **env_extra,
    }
    manage(env, "migrate", "--noinput", "-v", "0")
    key = manage(env, "createapikey", "bench", "--create-user").strip()
    owner = manage(env, "shell", "-v", "0", "-c",
                   "from accounts.models import User; print(User.objects.get(username='bench').id)").strip()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--port", str(port), "--host", "127.0.0.1",
         "--workers", str(processes), "--no-worker", "-v", "0"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        auth = {"Authorization": f"Bearer {key}"}
        for i in range(10):
            httpx.post(f"{base}/v1/combo/agents", headers=auth, json={"name": f"agent {i}", "instructions": "x" * 200})
        api_url, bare_url = f"{base}/v1/combo/agents", f"{base}/bench/bare-agents?owner={owner}"
        assert httpx.get(api_url, headers=auth).json()["data"]["items"] == httpx.get(bare_url).json()["items"]
        wrk(api_url, 2, connections, auth)  # warm-up
        wrk(bare_url, 2, connections, {})
        # Alternating rounds, the median of each side: a shared machine's slow
        # spell then lands on both sides instead of on whichever ran second.
        apis, bares = [], []
        for _ in range(rounds):
            apis.append(wrk(api_url, seconds, connections, auth))
            bares.append(wrk(bare_url, seconds, connections, {}))
        api, bare = median_run(apis), median_run(bares)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"label": label, "processes": processes, "api": api, "bare": bare}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating API/bare runs per configuration; the median of each side is shown")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is missing: apt-get install wrk")
        return 1
    rows = [run_config("SQLite, local cache", {}, 1, args.seconds, args.connections, args.rounds)]
    reason = postgres_unreachable()
    if reason is None:
        for processes in [int(p) for p in args.processes.split(",")]:
            with FreshPostgres() as database:
                rows.append(run_config("PostgreSQL + Redis", database.env,
                                       processes, args.seconds, args.connections, args.rounds))
    else:
        print(f"{reason}: only the embedded row is measured.")
    print(f"\nGET /v1/combo/agents (API key, rate limit, envelope) vs a bare view, "
          f"wrk -c{args.connections}, {args.seconds}s each, median of {args.rounds} alternating runs per side, "
          f"{os.cpu_count()} cores\n")
    print("| backend | processes | API req/s | API p50 / p99 ms | bare req/s | bare p50 / p99 ms | API / bare | non-2xx |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        api, bare = row["api"], row["bare"]
        print(f"| {row['label']} | {row['processes']} | {api['rps']:.0f} | {api['p50']:.1f} / {api['p99']:.1f} | "
              f"{bare['rps']:.0f} | {bare['p50']:.1f} / {bare['p99']:.1f} | {api['rps'] / bare['rps']:.0%} | "
              f"{api['bad'] + bare['bad']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
