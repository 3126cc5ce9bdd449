"""The HTTP load generator, run as its own process so it does not share a core's event loop
with the orchestrator: `python -m bitloot.bench.loadgen --input F --output F ...`.

It sends each prepared request exactly once (a fixed N, never a duration), over C
keep-alive connections spread round-robin over the given ports, with a per-request timeout
and an overall deadline, to 127.0.0.1 only. Latency is measured per request from the first
byte written to the last byte read.

Two clients: `raw` (default) writes prepared HTTP/1.1 bytes on asyncio streams and parses
only the status line and Content-Length, a few microseconds per request; `aiohttp` is the
aiohttp client, which costs roughly ten times more CPU per request. On a 2-core machine the
client's CPU is taken from the servers, and more from the faster one, so the cheaper
client gives the fairer ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


@dataclass
class Outcome:
    """What the run measured."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    sample_failure: str | None = None
    elapsed: float = 0.0


@dataclass
class Plan:
    """Where and how to send: the shared work iterator and the per-request limit."""

    path: str
    work: Iterator[Prepared]
    out: Outcome
    bar: Progress
    request_seconds: float


@dataclass(frozen=True)
class Prepared:
    """One request: its body and headers (beyond Host, Content-Type and Content-Length)."""

    body: bytes
    headers: tuple[tuple[str, str], ...]


def load_requests(path: Path) -> tuple[str, list[Prepared]]:
    """Read `{"path": ..., "requests": [{"body": str, "headers": {...}}, ...]}`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    prepared = [
        Prepared(r["body"].encode("utf-8"), tuple(sorted(r.get("headers", {}).items())))
        for r in data["requests"]
    ]
    return str(data["path"]), prepared


def raw_request(path: str, port: int, req: Prepared) -> bytes:
    """The HTTP/1.1 bytes of one request."""
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(req.body)}",
        *(f"{k}: {v}" for k, v in req.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + req.body


class Progress:
    """Counts answers; shows a bar on stderr when asked."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.bar: Any = None
        if enabled:
            from bitloot.bench.common import progress

            self.bar = progress(total, desc, unit="req")

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep-alive) of one response; Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length: int | None = None
    chunked = False
    keep_alive = True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        lname = name.strip().lower()
        if lname == "content-length":
            length = int(value.strip())
        elif lname == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif lname == "connection" and value.strip().lower() == "close":
            keep_alive = False
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), keep_alive
    body = await reader.readexactly(length) if length else b""
    return status, body, keep_alive


async def _raw_connection(
    plan: Plan, port: int, ready: asyncio.Event, connected: list[int]
) -> None:
    out, bar = plan.out, plan.bar
    reader, writer = await asyncio.open_connection(HOST, port)
    connected.append(port)
    await ready.wait()
    try:
        for req in plan.work:
            data = raw_request(plan.path, port, req)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(plan.request_seconds):
                    writer.write(data)
                    status, body, keep_alive = await _read_response(reader)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                out.errors[type(exc).__name__] += 1
                bar.tick()
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
                continue
            out.latencies.append(time.perf_counter() - started)
            out.statuses[status] += 1
            if status != 200 and out.sample_failure is None:
                out.sample_failure = f"{status} {body[:300].decode('utf-8', 'replace')}"
            bar.tick()
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
    finally:
        writer.close()


async def run_raw(plan: Plan, ports: list[int], concurrency: int) -> Outcome:
    """Each connection takes the next request from the shared iterator when it is free."""
    out = plan.out
    ready = asyncio.Event()
    connected: list[int] = []
    tasks = [
        asyncio.create_task(_raw_connection(plan, ports[i % len(ports)], ready, connected))
        for i in range(concurrency)
    ]
    while len(connected) < concurrency:
        await asyncio.sleep(0.001)
        for t in tasks:
            if t.done():
                t.result()  # a connection that could not open raises here
    started = time.perf_counter()
    ready.set()
    await asyncio.gather(*tasks)
    out.elapsed = time.perf_counter() - started
    return out


async def run_aiohttp(plan: Plan, ports: list[int], concurrency: int) -> Outcome:
    """The same with aiohttp's client."""
    import aiohttp

    out, bar, path, work = plan.out, plan.bar, plan.path, plan.work
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    client_timeout = aiohttp.ClientTimeout(total=plan.request_seconds)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as http:

        async def one_connection(port: int) -> None:
            url = f"http://{HOST}:{port}{path}"
            for req in work:
                headers = {"Content-Type": "application/json", **dict(req.headers)}
                started = time.perf_counter()
                try:
                    async with http.post(url, data=req.body, headers=headers) as resp:
                        body = await resp.read()
                        status = resp.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    out.errors[type(exc).__name__] += 1
                    bar.tick()
                    continue
                out.latencies.append(time.perf_counter() - started)
                out.statuses[status] += 1
                if status != 200 and out.sample_failure is None:
                    out.sample_failure = f"{status} {body[:300].decode('utf-8', 'replace')}"
                bar.tick()

        started = time.perf_counter()
        await asyncio.gather(*(one_connection(ports[i % len(ports)]) for i in range(concurrency)))
        out.elapsed = time.perf_counter() - started
    return out


async def run(args: argparse.Namespace) -> Outcome:
    path, requests = load_requests(args.input)
    ports = [int(p) for p in args.ports.split(",")]
    bar = Progress(len(requests), args.progress, args.desc)
    runner = run_raw if args.client == "raw" else run_aiohttp
    plan = Plan(path, iter(requests), Outcome(), bar, args.timeout)
    try:
        async with asyncio.timeout(args.deadline):
            return await runner(plan, ports, args.concurrency)
    finally:
        bar.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--ports", required=True, help="comma list of 127.0.0.1 ports")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--client", choices=["raw", "aiohttp"], default="raw")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--deadline", type=float, default=600.0, help="whole run, seconds")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--desc", default="requests")
    args = parser.parse_args()
    out = asyncio.run(run(args))
    args.output.write_text(
        json.dumps(
            {
                "latencies": out.latencies,
                "statuses": {str(k): v for k, v in out.statuses.items()},
                "errors": dict(out.errors),
                "sample_failure": out.sample_failure,
                "elapsed": out.elapsed,
                "client": args.client,
            }
        ),
        encoding="utf-8",
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
