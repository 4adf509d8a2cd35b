"""The demo call on a real Asterisk: Alice calls 1001, Bob answers and blind-transfers her to 1002, Carol answers.

Run by scripts/demo inside scripts/in-private-net (root). Starts Asterisk (scripts/asterisk-sandbox), the app
with examples/config.toml, and three sipp phones; while the call is up it reads ARI's bridges; then it stops
everything and prints a timeline built from what really happened: the phones' SIP messages (sipp -trace_msg),
the app's debug log, and the ARI events (--event-log) when the CLI has that option. Exit 0 only if the
transfer worked. Every file lands in .cache/demo/.

    scripts/demo [--verbose] [--talk-ms 6000] [--refer-delay-ms 1500]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import signal
import sys
import threading
import time
import urllib.error
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from sandbox_calls import (
    REPO,
    Phone,
    RigError,
    SipMessage,
    app_has_event_log,
    ari_get,
    parse_sipp_messages,
    sandbox,
    start_app,
    stop_asterisk,
    stop_process,
    wait_for_ari_app,
    wait_udp,
)

OUT = REPO / ".cache/demo"
CONFIG = REPO / "examples/config.toml"
Json = dict[str, Any]  # an ARI resource as JSON
WHO = {"alice": "Alice", "bob": "Bob", "carol": "Carol"}


@dataclass(order=True)
class Entry:
    ts: float
    who: str
    what: str


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--verbose", action="store_true", help="every REST call, ARI event and leg transition")
    parser.add_argument("--talk-ms", type=int, default=6000, help="how long Alice stays on the call (default 6000)")
    parser.add_argument("--refer-delay-ms", type=int, default=1500, help="Bob's pause before REFER (default 1500)")
    args = parser.parse_args()

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)  # through every finally below

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if old.is_file():
            old.unlink()
    try:
        run = _run_call(args)
    except RigError as exc:
        print(f"demo: {exc} (files in {OUT.relative_to(REPO)}/)", file=sys.stderr)
        return 1
    entries = _timeline(run, verbose=args.verbose)
    text = _render(entries)
    problems = _verdict(run)
    if problems:
        verdict = "transfer FAILED: " + "; ".join(problems)
    else:
        verdict = "transfer worked: Alice is talking to Carol; Bob's phone saw 100 then 200"
    (OUT / "timeline.txt").write_text(text + "\n" + verdict + "\n")
    print(text)
    print()
    print(verdict)
    return 1 if problems else 0


# -- running the call -------------------------------------------------------------------------------------


@dataclass
class Run:
    phones: dict[str, Phone]
    exit_codes: dict[str, int | None]
    snapshots: list[tuple[float, list[Json], list[Json]]]  # (ts, bridges, channels) while the call was up
    leftovers: tuple[list[Json], list[Json]]  # bridges and channels once everything ended
    event_log: Path | None


def _run_call(args: argparse.Namespace) -> Run:
    started = time.monotonic()
    phones = {
        "bob": Phone("bob", "bob_transferor.xml", OUT, ["-m", "1", "-set", "target", "1002",
                                                         "-set", "refer_delay_ms", str(args.refer_delay_ms)]),
        "carol": Phone("carol", "uas_answer.xml", OUT, ["-m", "1"]),
        "alice": Phone("alice", "alice_uac.xml", OUT, ["-m", "1", "-s", "1001", "-set", "talk_ms", str(args.talk_ms)]),
    }  # fmt: skip
    event_log = OUT / "events.jsonl" if app_has_event_log() else None
    app = None
    snapshots: list[tuple[float, list[Json], list[Json]]] = []
    leftovers: tuple[list[Json], list[Json]] = ([], [])
    codes: dict[str, int | None] = {}
    sandbox("start")
    try:
        app = start_app(CONFIG, OUT, "DEBUG", event_log)
        wait_for_ari_app("rcml", 15, app)
        phones["bob"].start()
        phones["carol"].start()
        wait_udp([5072, 5073])
        phones["alice"].start()
        stop_polling = threading.Event()
        poller = threading.Thread(target=_poll_bridges, args=(snapshots, stop_polling), daemon=True)
        poller.start()
        deadline = time.monotonic() + args.talk_ms / 1000 + args.refer_delay_ms / 1000 + 12
        for name in ("alice", "bob", "carol"):
            codes[name] = phones[name].wait(max(0.1, deadline - time.monotonic()))
        stop_polling.set()
        poller.join(2)
        leftovers = _settled()
        codes["app"] = stop_process(app)
    finally:
        for phone in phones.values():
            phone.stop()
        if app is not None:
            stop_process(app)
        stop_asterisk()
        print(f"demo: ran in {time.monotonic() - started:.1f} s; files in {OUT.relative_to(REPO)}/", file=sys.stderr)
    (OUT / "ari-snapshots.json").write_text(json.dumps(snapshots))
    return Run(phones, codes, snapshots, leftovers, event_log)


def _poll_bridges(snapshots: list[tuple[float, list[Json], list[Json]]], stop: threading.Event) -> None:
    """GET /ari/bridges and /ari/channels every 100 ms while the call is up."""
    while not stop.wait(0.1):
        try:
            ts = time.time()
            bridges, channels = ari_get("/bridges"), ari_get("/channels")
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if not isinstance(bridges, list) or not isinstance(channels, list):
            continue
        snapshots.append((ts, bridges, channels))


def _settled(timeout: float = 3.0) -> tuple[list[Json], list[Json]]:
    """Bridges and channels left once the phones are done (the app gets a moment to clean up)."""
    deadline = time.monotonic() + timeout
    while True:
        bridges, channels = ari_get("/bridges"), ari_get("/channels")
        if not isinstance(bridges, list) or not isinstance(channels, list):
            raise RigError("ARI answered GET /bridges or /channels with something that is not a list")
        if (not bridges and not channels) or time.monotonic() > deadline:
            return bridges, channels
        time.sleep(0.1)


# -- the timeline -----------------------------------------------------------------------------------------


def _timeline(run: Run, verbose: bool) -> list[Entry]:
    entries: list[Entry] = []
    for name, phone in run.phones.items():
        entries += _sip_entries(WHO[name], parse_sipp_messages(phone.msgs), verbose)
    entries += _app_entries(OUT / "app.log", verbose)
    if run.event_log is not None:
        entries += _event_entries(run.event_log, verbose)
    entries += _bridge_entries(run.snapshots)
    return sorted(entries)


def _sip_entries(who: str, messages: list[SipMessage], verbose: bool) -> Iterable[Entry]:
    phone = f"{who}'s phone"
    for msg in messages:
        if not verbose and (msg.retransmission or msg.method == "ACK" or msg.status == 100):
            continue
        if not verbose and not msg.is_request and msg.method in ("NOTIFY", "BYE") and msg.status == 200:
            continue  # the phone's 200 OK to a NOTIFY or BYE
        arrow = "sends" if msg.sent else "gets "
        if msg.is_request:
            # the Request-URI says something only for a new call; in-dialog it is just a contact
            text = f"{arrow} {msg.first_line.rsplit(' ', 1)[0] if msg.method == 'INVITE' else msg.method}"
            if msg.method == "INVITE" and not msg.sent:
                text += f"  (From {_user(msg.headers.get('from', ''))}: {who}'s phone rings)"
            if msg.method == "INVITE" and msg.sent:
                text += f"  ({who} calls {_user(msg.first_line)})"
            if msg.method == "BYE" and msg.sent:
                text += f"  ({who} hangs up)"
            if msg.method == "REFER":
                text += f"  Refer-To: {msg.headers.get('refer-to', '?')}"
                if "referred-by" in msg.headers:
                    text += f"  Referred-By: {msg.headers['referred-by']}"
            if msg.method == "NOTIFY":
                frag = msg.body.splitlines()[0] if msg.body else "(no body)"
                text += f"  sipfrag '{frag}'  Subscription-State: {msg.headers.get('subscription-state', '?')}"
        else:
            text = f"{arrow} {msg.first_line.split(' ', 1)[1]} (to {msg.method})"
            if msg.sent and msg.method == "INVITE" and msg.status == 200:
                text += f"  ({who} answers)"
        if msg.retransmission:
            text += "  [retransmission]"
        yield Entry(msg.ts, phone, text)


def _user(header: str) -> str:
    match = re.search(r"sips?:([^@;>]+)", header)
    return match.group(1) if match else header


_APP_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (\w+) ([\w.]+): (.*)$")
_REST = re.compile(r'^HTTP Request: (\w+) (\S+) "HTTP/1.1 (\d+)')
# the REST calls that move the call on: originate, answer, hang up, bridge membership, transfer progress
_KEY_REST = re.compile(
    r"^(POST /channels|DELETE /channels/[^/]+|POST /channels/[^/]+/(answer|transfer_progress)"
    r"|POST /bridges/[^/]+/\w+Channel)$"
)


def _app_entries(path: Path, verbose: bool) -> Iterable[Entry]:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return
    for line in lines:
        match = _APP_LINE.match(line)
        if match is None:
            continue
        stamp, ms, level, logger, message = match.groups()
        ts = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").timestamp() + int(ms) / 1000  # the app logs local time
        text = None
        if logger == "httpx":
            text = _rest_text(message, verbose)
        elif logger == "stasis_app.webhook":
            text = _webhook_text(message, verbose)
        elif logger == "stasis_app.legs":
            text = message if verbose else None
        elif logger.startswith("stasis_app") and level != "DEBUG":
            text = message if "call" in message or "REFER" in message or "transfer" in message or verbose else None
            if level in ("WARNING", "ERROR") and "Refer-Sub" not in message:
                text = f"{level}: {message}"
        elif level in ("WARNING", "ERROR"):
            text = f"{level} {logger}: {message}"
        if text:
            yield Entry(ts, "app", text)


def _rest_text(message: str, verbose: bool) -> str | None:
    match = _REST.match(message)
    if match is None:
        return None
    method, url, status = match.groups()
    parts = urlsplit(url)
    path = unquote(parts.path.removeprefix("/ari"))
    if not verbose and not _KEY_REST.match(f"{method} {path}"):
        return None
    query = " ".join(f"{k}={v}" for k, v in parse_qsl(parts.query) if k not in ("app", "callerId"))
    what = "originate" if (method, path) == ("POST", "/channels") else ""
    return f"ARI {method} {path} {query} -> {status} {what}".replace("  ", " ").strip()


def _webhook_text(message: str, verbose: bool) -> str | None:
    # "POST app:refer {'CallSid': ...}" (the request) and "POST app:refer -> ok (0 ms)" (its answer)
    method, _, rest = message.partition(" ")
    url, _, tail = rest.partition(" ")
    if tail.startswith("{"):
        try:
            params = ast.literal_eval(tail)
        except (ValueError, SyntaxError):
            return f"requests {url} ({method}) {tail}"
        first = ["Transferor", "Transferee", "ReferTarget", "CallSid", "From", "To", "CallStatus", "Direction"]
        shown = [k for k in first if k in params] + ([k for k in params if k not in first] if verbose else [])
        pairs = " ".join(f"{k}={params[k]}" for k in shown if params[k] != "")
        return f"requests {url} ({method}): {pairs}"
    return f"{url}: {tail}" if verbose or "failed" in tail else None


def _event_entries(path: Path, verbose: bool) -> Iterable[Entry]:
    seen_transfer = False
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = record.get("event")
        if not isinstance(event, dict):
            continue
        kind = event.get("type", "?")
        if kind == "ChannelTransfer" and event.get("state") is None and not seen_transfer:
            seen_transfer = True
            dest = event.get("refer_to", {}).get("requested_destination", {}).get("destination")
            by = event.get("referred_by", {})
            source = by.get("source_channel", {}).get("name", "?")
            peer = (by.get("connected_channel") or {}).get("name", "?")
            text = f"ARI event ChannelTransfer: {source} asks to transfer {peer} to '{dest}'"
            yield Entry(record["ts"], "Asterisk", text)
        elif verbose and kind != "ChannelVarset":
            detail = " ".join(
                str(x)
                for x in (
                    (event.get("channel") or event.get("peer") or {}).get("name", ""),
                    (event.get("bridge") or {}).get("name", ""),
                    event.get("state") or event.get("dialstatus") or "",
                )
                if x
            )
            yield Entry(record["ts"], "Asterisk", f"ARI event {kind} {detail}")


def _bridge_entries(snapshots: list[tuple[float, list[Json], list[Json]]]) -> Iterable[Entry]:
    last = None
    for ts, bridges, channels in snapshots:
        view = _bridges_view(bridges, channels)
        if view != last:
            yield Entry(ts, "ARI", f"GET /bridges: {view}")
            last = view


def _bridges_view(bridges: list[Json], channels: list[Json]) -> str:
    names = {c["id"]: c["name"] for c in channels}
    if not bridges:
        return "no bridge"
    return "; ".join(
        f"{b.get('name') or b['id'][:8]} [{', '.join(names.get(c, c) for c in b['channels'])}]" for b in bridges
    )


def _render(entries: list[Entry]) -> str:
    start = next((e.ts for e in entries if e.who == "Alice's phone"), entries[0].ts if entries else 0.0)
    lines = [
        "Alice (sipp, 127.0.0.1:5071) calls 1001 (examples/config.toml: app:dial-bob, Refer URL app:refer);",
        "Bob (5072) answers and blind-transfers her with REFER to 1002 (app:dial-carol); Carol (5073) answers.",
        "t = 0 is Alice's INVITE; times from sipp -trace_msg, the app's log (ms) and ARI (events, GET /bridges).",
        "",
        "    t (s)  who             what",
        "  -------  --------------  " + "-" * 60,
    ]
    # the app's start-up lines (and the empty bridge list before the call) are not part of the call
    lines += [f"  {e.ts - start:7.3f}  {e.who:<14}  {e.what}" for e in entries if e.ts >= start - 0.002]
    return "\n".join(lines)


# -- the verdict ------------------------------------------------------------------------------------------


def _verdict(run: Run) -> list[str]:
    problems: list[str] = []
    for name, code in run.exit_codes.items():
        if code != 0:
            problems.append(f"{name} exited {'(still running)' if code is None else code}")
    bob = run.phones["bob"].log_lines()
    frags = [line.split("sipfrag=")[1].split()[0] for line in bob if line.startswith("notify sipfrag=")]
    if "refer_response=202" not in bob:
        problems.append(f"Bob's REFER got no 202 ({', '.join(bob) or 'no log'})")
    if "100" not in frags or "200" not in frags or frags.index("100") > frags.index("200"):
        problems.append(f"Bob's phone saw NOTIFY sipfrags {frags or 'none'}, not 100 then 200")
    if "final_sipfrag=200" not in bob:
        problems.append("Bob's final NOTIFY was not 200")
    if "answered" not in run.phones["carol"].log_lines():
        problems.append("Carol never answered")
    if "final_response=200" not in run.phones["alice"].log_lines():
        problems.append("Alice's call was not answered")
    params = _refer_params(OUT / "app.log")
    expected = {"Transferor": "bob", "Transferee": "alice", "ReferTarget": "1002"}
    if params is None:
        problems.append("the app's log has no Refer URL request")
    elif any(params.get(k) != v for k, v in expected.items()):
        problems.append(f"the refer request carried {', '.join(f'{k}={params.get(k)}' for k in expected)}")
    talking = [(ts, b, c) for ts, b, c in run.snapshots if _connected(b, c, "alice", "carol")]
    if not talking:
        problems.append("ARI never showed Alice and Carol in connected bridges")
    elif any(_in_bridge(b, c, "bob") for _, b, c in talking):
        problems.append("Bob was still bridged while Alice talked to Carol")
    bridges, channels = run.leftovers
    if bridges or channels:
        problems.append(f"left behind after the call: {len(bridges)} bridges, {len(channels)} channels")
    return problems


def _refer_params(app_log: Path) -> dict[str, str] | None:
    for line in app_log.read_text(errors="replace").splitlines():
        match = _APP_LINE.match(line)
        if match and match.group(4) == "stasis_app.webhook" and " app:refer {" in match.group(5):
            try:
                return dict(ast.literal_eval(match.group(5).split(" ", 2)[2]))
            except (ValueError, SyntaxError):
                return {}
    return None


def _phone_channel(channels: list[Json], who: str) -> str | None:
    return next((c["id"] for c in channels if c["name"].startswith(f"PJSIP/{who}-")), None)


def _in_bridge(bridges: list[Json], channels: list[Json], who: str) -> bool:
    channel = _phone_channel(channels, who)
    return channel is not None and any(channel in b["channels"] for b in bridges)


def _connected(bridges: list[Json], channels: list[Json], a: str, b: str) -> bool:
    """Whether phones a and b hear each other: through bridges, and Local channel pairs (;1 and ;2)."""
    start, goal = _phone_channel(channels, a), _phone_channel(channels, b)
    if start is None or goal is None:
        return False
    links: dict[str, set[str]] = {}
    for bridge in bridges:
        for x in bridge["channels"]:
            links.setdefault(x, set()).update(y for y in bridge["channels"] if y != x)
    by_name = {c["name"]: c["id"] for c in channels}
    local = {c["id"] for c in channels if c["name"].startswith("Local/")}
    for name, cid in by_name.items():
        if name.startswith("Local/") and name.endswith(";1") and (other := by_name.get(name[:-1] + "2")):
            links.setdefault(cid, set()).add(other)
            links.setdefault(other, set()).add(cid)
    seen, todo = {start}, [start]
    while todo:
        for nxt in links.get(todo.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen and nxt in local:  # audio passes through Local channels, not through a phone
                seen.add(nxt)
                todo.append(nxt)
    return False


if __name__ == "__main__":
    sys.exit(main())
