"""Benchmark of the REFER hot path: REFER -> INVITE at the target, and CPU per transferred call.

Run by scripts/bench-refer inside scripts/in-private-net (root). For each mode, a fresh Asterisk, a warm-up
round, then N sequential calls (one sipp process per phone, Alice with -l 1): Alice calls 1001, Bob answers
and REFERs to 1002 after refer_delay_ms, Carol answers. Modes:

  app-client   stasis-rcml; the refer app dials <Client>carol</Client> (PJSIP/carol) directly
  app-number   stasis-rcml with examples/config.toml; the refer app dials <Number>1002</Number>, one of our own
               numbers: Local/1002@rcml/n, whose Voice app (app:dial-carol) dials Carol
  core         no app: Asterisk's own blind transfer (PJSIP_TRANSFER_HANDLING core, the default) in a
               dialplan context where 1001 dials Bob and 1002 dials Carol (set up in the sandbox's copy of
               the config after start; the next start reinstalls the repository's config)

Latency = Carol's sipp timestamp of the INVITE it received - Bob's sipp timestamp of the REFER he sent
(sipp -trace_msg, same clock). CPU = utime+stime (/proc/PID/stat) of the app process and of Asterisk over the
measured round, divided by the calls. Results: a table on stdout and .cache/bench/refer-<time>.json
(and latest.json).

    scripts/bench-refer [-n 20] [--warmup 2] [--modes app-client,app-number,core] [--app-log-level INFO]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from sandbox_calls import (
    REPO,
    Phone,
    RigError,
    asterisk_pid,
    cpu_seconds,
    parse_sipp_messages,
    sandbox,
    start_app,
    stop_asterisk,
    stop_process,
    use_core_transfer,
    wait_for_ari_app,
    wait_udp,
)

OUT = REPO / ".cache/bench"
MODES = ("app-client", "app-number", "core")
REFER_DELAY_MS = 300
RING_MS = 100
TALK_MS = REFER_DELAY_MS + RING_MS + 500  # Alice hangs up a while after Carol answered

CLIENT_APPS = {
    "dial-bob": '<Response>\n  <Dial timeout="20"><Client>bob</Client></Dial>\n</Response>\n',
    "refer-client": "<Response>\n  <Dial><Client>carol</Client></Dial>\n</Response>\n",
}
CLIENT_CONFIG = """\
# scripts/bench-refer: the refer app dials Carol directly (no Local channel)
[ari]
url = "http://127.0.0.1:8088"
username = "asterisk"
password = "asterisk"
app = "rcml"

[routing]
apps_dir = "apps"
client = "PJSIP/{client}"

[[numbers]]
number = "1001"
voice_url = "app:dial-bob"
refer_url = "app:refer-client"
"""


@dataclass
class ModeResult:
    mode: str
    calls: int
    latencies_ms: list[float] = field(default_factory=list)
    notify100_ms: list[float] = field(default_factory=list)  # REFER -> NOTIFY 100 at Bob
    final_200: int = 0  # Bob's calls whose final NOTIFY sipfrag was 200
    app_cpu_s: float | None = None
    asterisk_cpu_s: float = 0.0
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)

    def stats(self, values: list[float]) -> dict[str, float | None]:
        if not values:
            return {"min": None, "median": None, "p90": None, "max": None}
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, max(0, round(0.9 * len(ordered) + 0.5) - 1))]
        return {"min": ordered[0], "median": statistics.median(ordered), "p90": p90, "max": ordered[-1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--calls", type=int, default=20, help="measured transfers per mode (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="calls before measuring, per mode (default 2)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--app-log-level", default="INFO", help="the app's --log-level (default INFO)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"unknown mode(s): {', '.join(unknown)}")

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    OUT.mkdir(parents=True, exist_ok=True)
    results: list[ModeResult] = []
    started = time.monotonic()
    try:
        for mode in modes:
            print(f"bench-refer: {mode}: {args.warmup} warm-up + {args.calls} calls ...", file=sys.stderr, flush=True)
            results.append(_run_mode(mode, args.calls, args.warmup, args.app_log_level))
    except RigError as exc:
        print(f"bench-refer: {exc}", file=sys.stderr)
        return 1
    _report(results, args, time.monotonic() - started)
    return 1 if any(r.problems for r in results) else 0


def _run_mode(mode: str, calls: int, warmup: int, log_level: str) -> ModeResult:
    out = OUT / mode
    out.mkdir(parents=True, exist_ok=True)
    result = ModeResult(mode, calls)
    app = None
    sandbox("start")
    try:
        if mode == "core":
            use_core_transfer()
        else:
            config = REPO / "examples/config.toml" if mode == "app-number" else _client_config(out)
            app = start_app(config, out, log_level, None)
            wait_for_ari_app("rcml", 15, app)
        if warmup:
            _round(out / "warmup", warmup)
        ast_pid = asterisk_pid()
        app_cpu0 = cpu_seconds(app.pid) if app else 0.0
        ast_cpu0 = cpu_seconds(ast_pid)
        t0 = time.monotonic()
        phones = _round(out / "run", calls)
        time.sleep(0.3)  # the last hangups are part of the last call's cost
        result.wall_s = time.monotonic() - t0
        result.asterisk_cpu_s = cpu_seconds(ast_pid) - ast_cpu0
        if app is not None:
            result.app_cpu_s = cpu_seconds(app.pid) - app_cpu0
        _latencies(phones, result)
    finally:
        if app is not None:
            code = stop_process(app)
            if code != 0:
                result.problems.append(f"the app exited {code}")
        stop_asterisk()
    return result


def _client_config(out: Path) -> Path:
    apps = out / "apps"
    apps.mkdir(exist_ok=True)
    for name, text in CLIENT_APPS.items():
        (apps / f"{name}.xml").write_text(text)
    config = out / "config.toml"
    config.write_text(CLIENT_CONFIG)
    return config


def _round(out: Path, calls: int) -> dict[str, Phone]:
    out.mkdir(parents=True, exist_ok=True)
    m = ["-m", str(calls)]
    phones = {
        "bob": Phone("bob", "bob_transferor.xml", out, [*m, "-set", "target", "1002",
                                                        "-set", "refer_delay_ms", str(REFER_DELAY_MS)]),
        "carol": Phone("carol", "uas_answer.xml", out, [*m, "-set", "ring_ms", str(RING_MS)]),
        "alice": Phone("alice", "alice_uac.xml", out, [*m, "-l", "1", "-s", "1001", "-set", "talk_ms", str(TALK_MS)]),
    }  # fmt: skip
    try:
        phones["bob"].start()
        phones["carol"].start()
        wait_udp([5072, 5073])
        phones["alice"].start()
        budget = time.monotonic() + calls * (TALK_MS / 1000 + 1.5) + 10
        for name in ("alice", "bob", "carol"):
            code = phones[name].wait(max(0.1, budget - time.monotonic()))
            if code is None:
                raise RigError(f"{out.relative_to(REPO)}: {name}'s sipp did not finish in time")
            if code != 0:
                raise RigError(
                    f"{out.relative_to(REPO)}: {name}'s sipp exited {code} (see {name}.out, {name}_logs.log)"
                )
    finally:
        for phone in phones.values():
            phone.stop()
    return phones


def _latencies(phones: dict[str, Phone], result: ModeResult) -> None:
    bob = parse_sipp_messages(phones["bob"].msgs)
    carol = parse_sipp_messages(phones["carol"].msgs)
    refers = [m for m in bob if m.sent and m.method == "REFER" and m.is_request and not m.retransmission]
    invites = [m for m in carol if not m.sent and m.method == "INVITE" and m.is_request and not m.retransmission]
    if len(refers) != result.calls or len(invites) != result.calls:
        result.problems.append(
            f"{len(refers)} REFERs sent and {len(invites)} INVITEs at Carol for {result.calls} calls"
        )
    # sequential calls (Alice -l 1): the k-th REFER caused the k-th INVITE at Carol
    for refer, invite in zip(refers, invites, strict=False):
        latency = (invite.ts - refer.ts) * 1000
        if not 0 <= latency < 2000:
            result.problems.append(f"REFER/INVITE pairing looks wrong ({latency:.1f} ms)")
        result.latencies_ms.append(round(latency, 3))
    for refer in refers:
        first = next(
            (m for m in bob if not m.sent and m.method == "NOTIFY" and m.call_id == refer.call_id and "100" in m.body),
            None,
        )
        if first is not None:
            result.notify100_ms.append(round((first.ts - refer.ts) * 1000, 3))
    result.final_200 = sum(line == "final_sipfrag=200" for line in phones["bob"].log_lines())
    if result.final_200 != result.calls:
        result.problems.append(f"only {result.final_200} of {result.calls} transfers ended with NOTIFY 200")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _report(results: list[ModeResult], args: argparse.Namespace, elapsed: float) -> None:
    lines = [
        f"REFER -> INVITE at the target (ms, sipp timestamps), {args.calls} sequential transfers per mode; "
        f"CPU per transferred call (ms)",
        "",
        f"{'mode':<11} {'min':>6} {'median':>7} {'p90':>6} {'max':>6}  {'NOTIFY100 med':>13}  "
        f"{'app CPU/call':>12}  {'Asterisk CPU/call':>17}  {'200s':>5}",
    ]
    for r in results:
        s, n = r.stats(r.latencies_ms), r.stats(r.notify100_ms)
        app_cpu = None if r.app_cpu_s is None else r.app_cpu_s * 1000 / r.calls
        lines.append(
            f"{r.mode:<11} {_fmt(s['min']):>6} {_fmt(s['median']):>7} {_fmt(s['p90']):>6} {_fmt(s['max']):>6}  "
            f"{_fmt(n['median']):>13}  {_fmt(app_cpu):>12}  {_fmt(r.asterisk_cpu_s * 1000 / r.calls):>17}  "
            f"{r.final_200:>2}/{r.calls:<2}"
        )
    core = next((r for r in results if r.mode == "core"), None)
    if core is not None:
        core_cpu = core.asterisk_cpu_s * 1000 / core.calls
        for r in results:
            if r.app_cpu_s is not None and core_cpu > 0:
                ratio = r.app_cpu_s * 1000 / r.calls / core_cpu
                lines.append(
                    f"{r.mode}: app CPU per call = {ratio:.2f} x Asterisk's own per call in core mode "
                    f"(target < 0.5); median latency {_fmt(r.stats(r.latencies_ms)['median'])} ms (target <= 5)"
                )
    for r in results:
        for problem in r.problems:
            lines.append(f"PROBLEM {r.mode}: {problem}")
    lines.append(f"(CPU clock tick {1000 / _ticks():.0f} ms; total {elapsed:.0f} s)")
    print("\n".join(lines))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    payload = {
        "time": stamp,
        "calls": args.calls,
        "warmup": args.warmup,
        "app_log_level": args.app_log_level,
        "refer_delay_ms": REFER_DELAY_MS,
        "ring_ms": RING_MS,
        "talk_ms": TALK_MS,
        "modes": [
            asdict(r)
            | {
                "latency_ms": r.stats(r.latencies_ms),
                "notify100_ms": r.stats(r.notify100_ms),
                "app_cpu_ms_per_call": None if r.app_cpu_s is None else r.app_cpu_s * 1000 / r.calls,
                "asterisk_cpu_ms_per_call": r.asterisk_cpu_s * 1000 / r.calls,
            }
            for r in results
        ],
    }
    path = OUT / f"refer-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    (OUT / "latest.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results: {path.relative_to(REPO)}", file=sys.stderr)


def _ticks() -> int:
    import os

    return os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
