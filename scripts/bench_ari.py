"""Per-request cost of ARI REST over the events websocket vs the lean HTTP transport, on the running sandbox.

Run by ``scripts/bench-ari`` inside the private network namespace with the sandbox Asterisk started. For each
transport: connect an :class:`AriClient` as the app does, then make ``--count`` sequential requests (``ring`` on
a channel that does not exist: a 404 read into ``CallGone``, the engine's commonest error path, and
``GET /asterisk/info``), and report this process's CPU, Asterisk's CPU (from /proc, when its pid file is
found) and the wall time per request, plus the first request after connect.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from models.ari import AriEvent
from models.config import AriSettings
from stasis_app.ari import AriClient
from stasis_app.errors import CallGone


class _Idle:
    def __init__(self) -> None:
        self.connected = asyncio.Event()

    def on_event(self, event: AriEvent) -> None:
        pass

    async def on_connected(self, reconnect: bool) -> None:
        self.connected.set()


async def _ring(ari: AriClient) -> None:
    try:
        await ari.ring("no-such-channel")
    except CallGone:
        pass


async def _info(ari: AriClient) -> None:
    await ari.asterisk_info()


_PIDFILE = Path(os.environ.get("RCML_SANDBOX_DIR") or ".cache/asterisk-sandbox/root") / "run/rcml-sandbox/asterisk.pid"


def _asterisk_cpu() -> float:
    """Asterisk's user + system CPU seconds so far (0 when its pid file is not found)."""
    try:
        fields = Path(f"/proc/{_PIDFILE.read_text().strip()}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(ari: AriClient, call: Callable[[AriClient], Awaitable[None]], count: int) -> tuple[float, ...]:
    latencies = []
    cpu, asterisk = time.process_time(), _asterisk_cpu()
    wall = time.perf_counter()
    for _ in range(count):
        started = time.perf_counter()
        await call(ari)
        latencies.append(time.perf_counter() - started)
    cpu, asterisk = time.process_time() - cpu, _asterisk_cpu() - asterisk
    wall = time.perf_counter() - wall
    latencies.sort()
    p50, p90 = statistics.median(latencies), latencies[int(count * 0.9)]
    return cpu / count, asterisk / count, wall / count, p50, p90


async def _bench(url: str, rest: str, count: int) -> None:
    settings = AriSettings(url=url, rest=rest)  # type: ignore[arg-type]
    ari = AriClient(settings)
    handler = _Idle()
    task = asyncio.create_task(ari.run(handler))
    try:
        await asyncio.wait_for(handler.connected.wait(), 10)
        started = time.perf_counter()
        await _ring(ari)
        first = time.perf_counter() - started
        route = ari.over_socket.route if ari.over_socket is not None else "http"
        print(f"{rest:>9} (route {route}): first request after connect {first * 1000:.2f} ms")
        for name, call in (("ring 404", _ring), ("asterisk/info", _info)):
            await _measure(ari, call, count // 10)  # warm
            cpu, asterisk, wall, p50, p90 = await _measure(ari, call, count)
            print(
                f"{rest:>9} {name:>14}: app CPU {cpu * 1e6:4.0f} us, Asterisk CPU {asterisk * 1e6:4.0f} us,"
                f" wall {wall * 1e6:4.0f} us per request (p50 {p50 * 1e6:.0f}, p90 {p90 * 1e6:.0f})"
            )
        # 20 requests in flight at once, as a busy engine makes them: throughput and cost under concurrency.
        cpu, asterisk = time.process_time(), _asterisk_cpu()
        wall = time.perf_counter()
        for _ in range(count // 20):
            await asyncio.gather(*(_ring(ari) for _ in range(20)))
        done = count // 20 * 20
        cpu, asterisk, wall = time.process_time() - cpu, _asterisk_cpu() - asterisk, time.perf_counter() - wall
        print(
            f"{rest:>9} {'20 in flight':>14}: app CPU {cpu / done * 1e6:4.0f} us, Asterisk CPU"
            f" {asterisk / done * 1e6:4.0f} us, {done / wall:5.0f} requests/s"
        )
    finally:
        await ari.close()
        await asyncio.wait_for(task, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8088")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    for rest in ("websocket", "http", "websocket", "http"):
        asyncio.run(_bench(args.url, rest, args.count))


if __name__ == "__main__":
    main()
