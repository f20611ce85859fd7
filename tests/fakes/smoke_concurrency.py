"""Smoke check: many concurrent streams through OpenAICompatibleProvider.

Starts the fake server as its own process (as the benchmark does), opens
`--streams` concurrent streams through one provider and reports wall time,
token throughput, the client process's CPU time and any errors. Not a timed
test: run it by hand.

    python -m tests.fakes.smoke_concurrency --streams 300 --tokens 64 --interval 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import time

from agents.llm.base import ChatMessage, ChatRequest, LLMError, Usage
from agents.llm.openai_compat import OpenAICompatibleProvider


async def _one(provider: OpenAICompatibleProvider, index: int) -> tuple[int, str | None]:
    request = ChatRequest(
        messages=[ChatMessage("system", "You are a test."), ChatMessage("user", f"Question number {index}?")],
        model="fake",
    )
    count = 0
    try:
        async for piece in provider.stream(request):
            if not isinstance(piece, Usage):
                count += 1
    except LLMError as err:
        return count, err.error.slug
    return count, None


async def _run(base_url: str, streams: int, timeout: float, transport: str = "auto") -> dict:
    provider = OpenAICompatibleProvider(base_url, "sk-smoke", timeout=timeout, transport=transport)
    started, cpu = time.perf_counter(), time.process_time()
    results = await asyncio.gather(*(_one(provider, i) for i in range(streams)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    await provider.aclose()
    tokens = sum(count for count, _ in results)
    errors = collections.Counter(slug for _, slug in results if slug)
    return {"wall": wall, "cpu": cpu, "tokens": tokens, "errors": dict(errors), "transport": provider.transport}


def _process_cpu(pid: int) -> float:
    """User+system CPU seconds of another process (Linux); 0 where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--transport", choices=["auto", "httpx", "aiohttp"], default="auto")
    args = parser.parse_args()

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            "0",
            "--tokens",
            str(args.tokens),
            "--interval",
            str(args.interval),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        if line[:1] != ["READY"]:
            print(f"fake server did not start: {line}", file=sys.stderr)
            return 1
        base_url = f"http://127.0.0.1:{line[1]}/v1"
        server_cpu = _process_cpu(server.pid)
        result = asyncio.run(_run(base_url, args.streams, args.timeout, args.transport))
        server_cpu = _process_cpu(server.pid) - server_cpu
    finally:
        server.terminate()
        server.wait(timeout=10)
        if server.stdout is not None:
            server.stdout.close()

    ideal = args.tokens * args.interval
    print(
        f"[{result['transport']}] {args.streams} streams x {args.tokens} tokens ({args.interval * 1000:g} ms apart): "
        f"wall {result['wall']:.2f} s (ideal {ideal:.2f} s), "
        f"{result['tokens'] / result['wall']:.0f} tokens/s, client CPU {result['cpu']:.2f} s "
        f"({result['cpu'] / max(result['tokens'], 1) * 1e6:.1f} us/token), "
        f"fake server CPU {server_cpu:.2f} s, "
        f"tokens received {result['tokens']}/{args.streams * args.tokens}, errors {result['errors'] or 'none'}"
    )
    ok = not result["errors"] and result["tokens"] == args.streams * args.tokens
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
