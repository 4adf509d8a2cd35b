"""Load benchmark of the seed transfer: sipp phones placing calls at a rate, stasis-rcml vs Asterisk's own transfer.

Run by scripts/bench-load inside scripts/in-private-net (root). For each mode, a fresh Asterisk, a short
warm-up, then one load round: Alice's sipp places N calls to 1001 at R calls/s, at most L at once
(sipp -r R -m N -l L); Bob's sipp answers each and REFERs it to 1002 after refer_delay_ms, answering every
NOTIFY; Carol's sipp answers the transferred call after ring_ms; Alice hangs up talk_ms after she was answered.
Modes:

  app    stasis-rcml with examples/config.toml (the seed: the refer app dials <Number>1002</Number>, our own
         number, so Local/1002@rcml/n runs app:dial-carol, which dials Carol)
  core   no app: Asterisk's own blind transfer, in a dialplan context where 1001 dials Bob and 1002 dials Carol
  floor  scripts/floor_app.py instead of the app: the same event filter and REST requests on the same socket
         stack, and nothing else (no RCML, no call model, no validation): the least any Python ARI app spends

Alice's phone sends a From display name of its own per call (alice-N); Asterisk copies it to Bob's INVITE and,
after the transfer, to Carol's, which pairs the three legs of each call. Per call, from sipp -trace_msg:
completed = Alice was answered and hung up herself (200 to her BYE), Bob's terminating NOTIFY said 200, Carol
answered and Asterisk hung her up; latency = Carol's INVITE - Bob's REFER (one clock). CPU per transfer = the
utime+stime (/proc/PID/stat) the app and Asterisk spent over the round / the REFERs Bob sent; each round
also says how idle the whole machine was and how much of it the hypervisor gave other guests (/proc/stat).
Left = ARI's channels and bridges once the phones are done (given --settle seconds to drain). Asterisk is quiet
meanwhile (pjsip logger off, verbose and debug 0); the RTP port range comes from asterisk/rtp.conf.

Exit status 1 only when the harness could not measure (Asterisk, the app or sipp would not start, a phone
overran the round's time budget); calls that fail, a slow app or leftovers are results.

    scripts/bench-load [--rate 20] [--count N | --seconds 5] [--limit L] [--mode both|all|app|core|floor]
                       [--repeat K] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import FrameType

from load_calls import ModeResult, analyse_calls, read_log_complaints
from load_report import MODES, app_to_floor, median_ratios, table
from sandbox_calls import (
    REPO,
    Phone,
    RigError,
    ari_get,
    asterisk_pid,
    caller_id_from_phone,
    cpu_seconds,
    machine_cpu,
    quiet_asterisk,
    sandbox,
    sandbox_root,
    start_app,
    start_floor_app,
    stop_asterisk,
    stop_process,
    use_core_transfer,
    wait_for_ari_app,
    wait_udp,
)

OUT = REPO / ".cache/bench"
GROUPS = {"both": ["app", "core"], "all": ["app", "floor", "core"]}
REFER_DELAY_MS = 300
RING_MS = 100
BOB_HOLD_MS = 1000  # a refused REFER: Bob hangs up himself after this
TCP_COUNTERS = ("ListenOverflows", "ListenDrops", "TCPSynRetrans", "TCPTimeouts")
RECV_TIMEOUT_MS = 10_000  # a phone waiting longer than this on top of talk_ms fails the call (sipp -recv_timeout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="calls per second Alice places (default 20)")
    count = parser.add_mutually_exclusive_group()
    count.add_argument("--count", type=int, help="calls per mode (default: rate x seconds)")
    count.add_argument("--seconds", type=float, default=5.0, help="seconds of calls per mode (default 5)")
    parser.add_argument("--limit", type=int, help="most calls Alice has up at once (sipp -l; default 5 x rate)")
    parser.add_argument(
        "--mode", choices=(*GROUPS, *MODES), default="both", help="default both (app, then core); all adds floor"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the modes, interleaved (app, core, core, app, ...); ratios "
        "are then the median of each round's (default 1)",
    )
    parser.add_argument("--talk-ms", type=int, default=1500, help="Alice hangs up this long after her answer")
    parser.add_argument("--warmup", type=int, default=2, help="sequential calls before measuring (default 2)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds Asterisk gets to drain (default 5)")
    parser.add_argument("--app-log-level", default="INFO", help="the app's --log-level (default INFO)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args()
    calls = args.count if args.count is not None else math.ceil(args.rate * args.seconds)
    limit = args.limit if args.limit is not None else max(10, math.ceil(5 * args.rate))
    if args.rate <= 0 or calls < 1 or limit < 1 or args.warmup < 0 or args.talk_ms < 1:
        parser.error("--rate, --count/--seconds, --limit and --talk-ms must be positive, --warmup not negative")
    if not 1 <= args.repeat <= 10:
        parser.error("--repeat is 1 to 10")
    if calls > 5000 or args.rate > 500:
        parser.error("at most 5000 calls and 500 calls/s per mode: the bench must stay short")
    modes = GROUPS.get(args.mode, [args.mode])

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = OUT / f"load-{stamp}"
    results: list[ModeResult] = []
    started = time.monotonic()
    for number in range(1, args.repeat + 1):
        # Every other round in reverse order: a machine that slows down or speeds up during the run then weighs
        # on each mode alike.
        for mode in modes if number % 2 else modes[::-1]:
            result = ModeResult(mode=mode, rate=args.rate, calls=calls, limit=limit, round=number)
            label = result.label(args.repeat)
            say(
                f"{label}: {args.warmup} warm-up call(s), then {calls} calls at {args.rate:g}/s "
                f"(at most {limit} at once)"
            )
            results.append(result)
            try:
                _run_mode(result, out / label.replace("#", "-"), args)
            except RigError as exc:
                result.harness_errors.append(str(exc))
                say(f"{label}: {exc}")
    payload = _payload(results, args, stamp, time.monotonic() - started)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(payload, indent=2) + "\n"
    (OUT / f"load-{stamp}.json").write_text(text)
    (OUT / "load-latest.json").write_text(text)
    print(text if args.json else table(results, payload), end="" if args.json else "\n")
    say(f"results: {(OUT / f'load-{stamp}.json').relative_to(REPO)}; phone and app logs in {out.relative_to(REPO)}")
    return 1 if any(r.harness_errors for r in results) else 0


def say(line: str) -> None:
    print(f"bench-load: {line}", file=sys.stderr, flush=True)


def _run_mode(result: ModeResult, out: Path, args: argparse.Namespace) -> None:
    out.mkdir(parents=True, exist_ok=True)
    app = None
    sandbox("start")
    logs = sandbox_root() / "var/log/asterisk"
    log = logs / "messages.log"
    log_start = mode_start = log.stat().st_size if log.exists() else 0
    try:
        quiet_asterisk()
        caller_id_from_phone("alice")
        if result.mode == "core":
            use_core_transfer()
        elif result.mode == "floor":
            app = start_floor_app(out)
            wait_for_ari_app("rcml", 15, app)
        else:
            app = start_app(REPO / "examples/config.toml", out, args.app_log_level, None)
            wait_for_ari_app("rcml", 15, app)
        ast_pid = asterisk_pid()
        if args.warmup:
            _round(out / "warmup", args.warmup, 1000.0, 1, args.talk_ms, settle=args.settle)
            if not _alive(ast_pid):
                result.notes.append(f"Asterisk died during the warm-up; see {_rel(out)}/asterisk-*.log")
                return
        log_start = log.stat().st_size if log.exists() else 0
        app_cpu0 = cpu_seconds(app.pid) if app else 0.0
        ast_cpu0 = cpu_seconds(ast_pid)
        tcp0 = tcp_counters()
        machine0 = machine_cpu()
        tasks0 = _taskprocessors()
        t0 = time.monotonic()
        phones = _round(out / "run", result.calls, args.rate, result.limit, args.talk_ms, settle=args.settle)
        time.sleep(0.5)  # the last hangups are part of the last call's cost
        result.wall_s = round(time.monotonic() - t0, 3)
        result.tcp = {name: value - tcp0.get(name, 0) for name, value in tcp_counters().items()}
        total, idle, steal = (now - before for now, before in zip(machine_cpu(), machine0, strict=True))
        if total > 0:
            result.machine_idle_pct = round(100 * idle / total, 1)
            result.machine_steal_pct = round(100 * steal / total, 1)
        result.asterisk_cpu_s = _cpu_or_none(ast_pid)
        if result.asterisk_cpu_s is not None:
            result.asterisk_cpu_s -= ast_cpu0
        if app is not None:
            app_cpu = _cpu_or_none(app.pid)
            result.app_cpu_s = None if app_cpu is None else app_cpu - app_cpu0
            if app.poll() is not None:
                result.notes.append(f"the app exited ({app.returncode}) during the run")
        result.sipp_exit = {name: phone.proc.returncode if phone.proc else None for name, phone in phones.items()}
        analyse_calls(result, phones["alice"].msgs, phones["bob"].msgs, phones["carol"].msgs)
        if _alive(ast_pid):
            _leftovers(result, args.settle)
            tasks = _taskprocessors()
            result.notes.extend(_queues(tasks))
            result.notes.append(_tasks_per_call(tasks0, tasks, result.calls))
        else:
            result.notes.append(f"Asterisk died during the run; see {_rel(out)}/asterisk-*.log")
        result.asterisk_log = read_log_complaints(log, log_start, asterisk=True)
    finally:
        if app is not None:
            result.app_exit = stop_process(app)
            result.app_log = read_log_complaints(out / "app.log", 0, asterisk=False)
        stop_asterisk()
        _keep_asterisk_logs(logs, mode_start, out)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _rel(path: Path) -> Path:
    return path.relative_to(REPO)


def _keep_asterisk_logs(logs: Path, offset: int, out: Path) -> None:
    """Asterisk's console output and the round's part of messages.log next to the phones' logs (the next start
    empties console.log: after a crash it is the only place its last words are)."""
    try:
        (out / "asterisk-console.log").write_bytes((logs / "console.log").read_bytes())
        with (logs / "messages.log").open("rb") as messages:
            messages.seek(offset)
            (out / "asterisk-messages.log").write_bytes(messages.read())
    except OSError:
        pass  # no logs to keep: nothing was measured either


def tcp_counters() -> dict[str, int]:
    """The network namespace's TCP counters that tell of a connection kept waiting (e.g. a full accept queue
    answered by a SYN retransmission one second later): /proc/net/netstat TcpExt."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True)) if len(lines) == 2 else {}
    return {name: values[name] for name in TCP_COUNTERS if name in values}


def _cpu_or_none(pid: int) -> float | None:
    try:
        return cpu_seconds(pid)
    except OSError:
        return None  # the process is gone: a result, said in the notes


def _round(out: Path, calls: int, rate: float, limit: int, talk_ms: int, *, settle: float) -> dict[str, Phone]:
    """One round of ``calls`` seed-flow calls; returns the phones once all three have ended."""
    out.mkdir(parents=True, exist_ok=True)
    recv_timeout = ["-recv_timeout", str(talk_ms + RECV_TIMEOUT_MS)]
    budget = calls / rate + (talk_ms + RECV_TIMEOUT_MS) / 1000 + 20  # the round's upper bound, in seconds
    rel = out.relative_to(REPO)
    phones = {
        name: Phone(name, scenario, out, [*recv_timeout, "-trace_err", "-error_file", f"{rel}/{name}_err.log", *extra])
        for name, scenario, extra in (
            ("bob", "bob_transferor.xml", ["-set", "target", "1002", "-set", "refer_delay_ms", str(REFER_DELAY_MS),
                                           "-set", "hold_ms", str(BOB_HOLD_MS)]),
            ("carol", "uas_answer.xml", ["-set", "ring_ms", str(RING_MS)]),
            ("alice", "alice_uac.xml", ["-s", "1001", "-r", f"{rate:g}", "-m", str(calls), "-l", str(limit),
                                        "-set", "talk_ms", str(talk_ms), "-set", "unique_name", "1",
                                        "-timeout", f"{math.ceil(budget)}s"]),
        )
    }  # fmt: skip
    try:
        phones["bob"].start()
        phones["carol"].start()
        wait_udp([5072, 5073])
        phones["alice"].start()
        if phones["alice"].wait(budget) is None:
            raise RigError(f"{rel}: Alice's sipp did not finish within {budget:.0f} s")
        if phones["alice"].proc is not None and phones["alice"].proc.returncode not in (0, 1):
            raise RigError(f"{rel}: Alice's sipp exited {phones['alice'].proc.returncode} (see alice.out)")
        try:
            _drain(settle)
        except OSError:
            pass  # Asterisk is gone: said by the caller, which checks its pid
        # Bob and Carol answer whatever comes (no -m: a stray late NOTIFY must not count as one of their calls);
        # SIGUSR1 asks sipp to end once its calls are over
        for name in ("bob", "carol"):
            proc = phones[name].proc
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)
        for name in ("bob", "carol"):
            if phones[name].wait(BOB_HOLD_MS / 1000 + 5) is None:
                raise RigError(f"{rel}: {name}'s sipp did not end within 6 s of the last call")
    finally:
        for phone in phones.values():
            phone.stop()
    return phones


def _taskprocessors() -> dict[str, tuple[int, int]]:
    """Each of Asterisk's task queues: (tasks run so far, deepest it got), from ``core show taskprocessors``."""
    queues = {}
    for line in sandbox("cli", "core show taskprocessors", check=False, timeout=30).splitlines():
        fields = line.split()
        # Processor, Processed, In Queue, Max Depth, Low water, High water (22.10.1 adds two timing columns)
        if len(fields) >= 6 and fields[1].isdigit() and fields[3].isdigit():
            queues[fields[0]] = (int(fields[1]), int(fields[3]))
    return queues


def _tasks_per_call(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], calls: int) -> str:
    """Asterisk's work per call in tasks, over the queues there before and after the round (a call's own SIP
    serializers are gone by then), and the ARI app queue's share: the one that differs from the core run."""
    ran = {name: n - before[name][0] for name, (n, _depth) in after.items() if name in before}
    ari = sum(n for name, n in ran.items() if name.startswith("stasis/m:ari:application/"))
    per = max(calls, 1)
    total = sum(ran.values())
    return f"Asterisk tasks per call: {total / per:.0f} in its lasting queues (ARI app queue {ari / per:.0f})"


def _queues(queues: dict[str, tuple[int, int]]) -> list[str]:
    """Asterisk's busiest task queues of the round, by the deepest each got: a queue that backs up is where the
    calls waited (the ARI app's own, ``stasis/m:ari:application/rcml-*``, delivers all its events one by one)."""
    deepest = sorted(((depth, n, name) for name, (n, depth) in queues.items()), reverse=True)[:3]
    return [f"Asterisk queue {name}: {n} tasks, {depth} deep at most" for depth, n, name in deepest if depth >= 50]


def _drain(settle: float) -> list[str]:
    """Until Asterisk holds no channel and no bridge, for up to ``settle`` seconds; what is left."""
    deadline = time.monotonic() + settle
    while True:
        left = _left_in_asterisk()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def _left_in_asterisk() -> list[str]:
    channels = ari_get("/channels")
    bridges = ari_get("/bridges")
    if not isinstance(channels, list) or not isinstance(bridges, list):
        raise RigError(f"ARI GET /channels, /bridges: not lists ({channels!r:.80}, {bridges!r:.80})")
    return [f"channel {c['name']} ({c['state']})" for c in channels] + [
        f"bridge {b['id']} ({b.get('bridge_type', '?')}, {len(b['channels'])} channels)" for b in bridges
    ]


def _leftovers(result: ModeResult, settle: float) -> None:
    try:
        left = _drain(settle)
    except OSError as exc:
        result.notes.append(f"ARI did not answer after the run: {exc}")
        return
    result.left_channels = sum(item.startswith("channel ") for item in left)
    result.left_bridges = sum(item.startswith("bridge ") for item in left)
    result.left_sample = left[:10]


def _payload(results: list[ModeResult], args: argparse.Namespace, stamp: str, elapsed: float) -> dict[str, object]:
    modes = {r.label(args.repeat): asdict(r) | r.summary() for r in results}
    by_round: dict[str, list[dict[str, float | None]]] = {"app": [], "floor": []}
    for number in range(1, args.repeat + 1):
        found = {r.mode: r for r in results if r.round == number}
        if (core := found.get("core")) is not None:
            for name, rounds in by_round.items():
                if (mine := found.get(name)) is not None:
                    rounds.append(mine.ratios(core))
    return {
        "time": stamp,
        "rate": args.rate,
        "calls": results[0].calls if results else 0,
        "limit": results[0].limit if results else 0,
        "talk_ms": args.talk_ms,
        "refer_delay_ms": REFER_DELAY_MS,
        "ring_ms": RING_MS,
        "warmup": args.warmup,
        "app_log_level": args.app_log_level,
        "elapsed_s": round(elapsed, 1),
        "modes": modes,
        "repeat": args.repeat,
        "ratios_app_to_core": median_ratios(by_round["app"]),
        "ratios_floor_to_core": median_ratios(by_round["floor"]),
        "ratios_by_round": by_round,
        "app_cpu_to_floor_by_round": app_to_floor(results),
    }


if __name__ == "__main__":
    sys.exit(main())
