"""What one transferred call costs the app in-process: events decoded, requests sent, objects built.

    .venv/bin/python scripts/profile_hot_path.py [-n 200] [--top 25]

Two measurements, no Asterisk needed, deterministic enough to compare commits (function-call counts do not
depend on the machine's load; the times do, and this machine is shared):

1. **decode**: the 52 event messages a real Asterisk 22.10.1 sent the app for one seed transfer
   (``tests/captures/seed.jsonl``, the e2e run's ``--event-log``, i.e. after the event filter), as JSON text,
   through the websocket reader's own ``_deliver`` into a handler that does nothing.
2. **engine**: ``-n`` seed transfers (Alice calls 1001 -> Bob, Bob REFERs 1002 -> 1002's app dials Carol, Carol
   answers, Alice hangs up) on the fake Asterisk with the example ``app:`` documents; every event the fake
   raises goes to the engine as JSON text through the same ``_deliver``. cProfile counts the whole run; the
   table keeps the app's own code (``stasis_app``, ``models``) and what it calls directly (pydantic, json).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tests.fake.asterisk as fake_module  # noqa: E402
from models.ari import AriEvent, UnknownEvent  # noqa: E402
from models.config import NumberConfig  # noqa: E402
from stasis_app.ari import events  # noqa: E402
from tests.rig import Rig  # noqa: E402

SEED = ROOT / "tests" / "captures" / "seed.jsonl"


class _Null:
    async def on_connected(self, reconnect: bool) -> None:
        pass

    def on_event(self, event: AriEvent) -> None:
        pass


def decode(rounds: int) -> tuple[float, int, pstats.Stats]:
    messages = [json.dumps(json.loads(line)["event"], separators=(",", ":")) for line in SEED.read_text().splitlines()]
    handler = _Null()
    profile = cProfile.Profile()
    started = time.process_time()
    profile.enable()
    for _ in range(rounds):
        for message in messages:
            events._deliver(handler, message)
    profile.disable()
    per_transfer = (time.process_time() - started) / rounds
    return per_transfer, len(messages), pstats.Stats(profile)


async def transfers(count: int, apps: Path) -> dict[str, float]:
    numbers = (
        NumberConfig(number="1001", voice_url="app:dial-bob", refer_url="app:refer"),
        NumberConfig(number="1002", voice_url="app:dial-carol"),
    )
    async with Rig(apps, numbers=numbers) as rig:
        rig.fake.phone("PJSIP/bob", answer_after=0, ring=False)
        rig.fake.phone("PJSIP/carol", answer_after=0, ring=True)
        for _ in range(count):
            alice = await rig.call("alice", "1001")
            await rig.until(lambda alice=alice: rig.fake.bridged_with(alice))
            bob = rig.channel_named("PJSIP/bob")
            await rig.fake.settle(quiet_rounds=5)  # the engine has seen the Dial connect
            assert await rig.fake.refer(bob, "1002") == 202
            await rig.until(lambda bob=bob: bob not in rig.fake.channels and rig.fake.notifies[bob][-1:] == [200])
            await rig.until(lambda: any(n.startswith("PJSIP/carol") for n in map(rig.fake.name_of, rig.fake.channels)))
            await rig.fake.phone_hangup(alice)
            await rig.idle()
        rig.fake.assert_nothing_leaked()
        return {"events": len(rig.fake.event_log) / count, "requests": len(rig.fake.rest_log) / count}


def run_engine(count: int) -> tuple[dict[str, float], pstats.Stats]:
    # The fake hands the engine parsed events; make it go through the websocket reader's decode instead.
    deliver: list[AriEvent] = []

    def as_text(raw: dict[str, Any]) -> AriEvent:
        message = json.dumps(raw, separators=(",", ":"))
        events._deliver(_Catch(deliver), message)
        # A type the reader drops unparsed still has to go through the fake's queue: as an event nobody handles.
        return deliver.pop() if deliver else UnknownEvent.model_construct(type=raw["type"])

    fake_module.parse_event = as_text  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        apps = Path(tmp)
        shutil.copytree(ROOT / "examples" / "apps", apps, dirs_exist_ok=True)
        asyncio.run(transfers(2, apps))  # warm-up: imports, first parses, cached documents
        profile = cProfile.Profile()
        profile.enable()
        counts = asyncio.run(transfers(count, apps))
        profile.disable()
    return counts, pstats.Stats(profile)


class _Catch:
    def __init__(self, into: list[AriEvent]) -> None:
        self.into = into

    def on_event(self, event: AriEvent) -> None:
        self.into.append(event)


def summary(stats: pstats.Stats, per: int, top: int, only: tuple[str, ...]) -> None:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    calls = sum(entry[1] for entry in raw.values())
    print(f"  function calls per transfer: {calls / per:,.0f}")
    rows = []
    for (filename, line, name), (_cc, ncalls, tottime, cumtime, _callers) in raw.items():
        where = filename.replace(str(ROOT) + "/", "")
        if only and not any(part in where or part in name for part in only):
            continue
        rows.append((tottime, cumtime, ncalls, f"{where}:{line}({name})"))
    rows.sort(reverse=True)
    print(f"  {'tottime µs':>11} {'cumtime µs':>11} {'calls':>7}  (per transfer)")
    for tottime, cumtime, ncalls, label in rows[:top]:
        print(f"  {tottime / per * 1e6:11.1f} {cumtime / per * 1e6:11.1f} {ncalls / per:7.1f}  {label[-90:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="seed transfers on the fake (default 200)")
    parser.add_argument("--decode-rounds", type=int, default=2000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()

    per_transfer, messages, stats = decode(args.decode_rounds)
    print(f"decode: {messages} captured events of one seed transfer, {per_transfer * 1e6:.0f} µs CPU (cProfile on)")
    summary(stats, args.decode_rounds, args.top, ())

    counts, stats = run_engine(args.n)
    print(
        f"\nengine: {args.n} seed transfers on the fake: {counts['events']:.0f} events, "
        f"{counts['requests']:.0f} REST requests per transfer"
    )
    summary(stats, args.n, args.top, ("stasis_app", "models", "pydantic", "json", "<built-in method"))


if __name__ == "__main__":
    main()
