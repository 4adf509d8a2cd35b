"""What scripts/bench_load.py makes of one load round: the calls, paired across the phones, and their figures.

Every call of the seed flow has three SIP dialogs, one per phone: Alice -> 1001, Asterisk -> Bob (who REFERs),
Asterisk -> Carol. Alice's phone sends the From display name ``alice-N``; Asterisk puts it on Bob's and on Carol's
INVITE, so the three dialogs of a call share that name. Stdlib only.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sandbox_calls import SipMessage, parse_sipp_messages

_DISPLAY_NAME = re.compile(r'^\s*"([^"]*)"')
_ASTERISK_LINE = re.compile(r"^\[[^\]]*\] (WARNING|ERROR)\[\d+\](?:\[[^\]]*\])? (.*)$")
_APP_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL) (.*)$")
# what differs from one call to the next in a log line: CallSids, ARI ids, channel ids and name suffixes
_VARYING = re.compile(r"\b(?:CA)?[0-9a-f]{32}\b|\b[0-9a-f]{8}-[0-9a-f-]{27}\b|\b\d{5,}(?:\.\d+)?\b|(?<=-)[0-9a-f]{8}\b")


@dataclass
class Call:
    """One call of the seed flow, as the three phones saw it (``None``/False: that step never happened)."""

    name: str
    alice_answered: bool = False
    alice_refused: bool = False  # 503: the app's admission control turned the call away
    alice_hung_up: bool = False  # she sent BYE and got 200
    alice_remote_bye: bool = False  # Asterisk hung her up
    refer_ts: float | None = None  # Bob sent REFER (first transmission)
    refer_202: bool = False
    final_sipfrag: int | None = None  # of the NOTIFY with Subscription-State: terminated
    carol_invite_ts: float | None = None
    carol_answered: bool = False  # she sent 200 and got the ACK
    carol_bye: bool = False

    @property
    def completed(self) -> bool:
        return self.failure is None

    @property
    def failure(self) -> str | None:
        """The first step of the flow that did not happen, in words; None for a completed call."""
        steps = (
            (not self.alice_refused, "Alice was refused with 503 (overload)"),
            (self.alice_answered, "Alice was not answered"),
            (self.refer_ts is not None, "Bob sent no REFER"),
            (self.refer_202, "Bob's REFER got no 202"),
            (self.carol_invite_ts is not None, "Carol got no INVITE"),
            (self.carol_answered, "Carol's answer was not ACKed"),
            (self.final_sipfrag == 200, f"Bob's final NOTIFY said {self.final_sipfrag or 'nothing'}"),
            (not self.alice_remote_bye, "Asterisk hung Alice up"),
            (self.alice_hung_up, "Alice's BYE got no 200"),
            (self.carol_bye, "Carol was not hung up"),
        )
        return next((why for ok, why in steps if not ok), None)

    @property
    def latency_ms(self) -> float | None:
        if self.refer_ts is None or self.carol_invite_ts is None:
            return None
        return round((self.carol_invite_ts - self.refer_ts) * 1000, 3)


@dataclass
class ModeResult:
    """One mode's load round: what was asked, what happened, and what the harness could not do."""

    mode: str
    rate: float
    calls: int
    limit: int
    placed: int = 0  # INVITEs Alice sent
    placing_s: float = 0.0  # her first INVITE to her last
    refers: int = 0
    refused: int = 0  # Alice got 503: turned away by admission control
    completed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # why calls did not complete -> how many
    unpaired: int = 0  # Bob's or Carol's dialogs without a name Alice sent
    app_cpu_s: float | None = None
    asterisk_cpu_s: float | None = None
    # The whole machine over the round (/proc/stat): how much of its CPU was idle, and how much the hypervisor
    # gave to other guests (steal). A shared machine's neighbours move every figure above.
    machine_idle_pct: float | None = None
    machine_steal_pct: float | None = None
    wall_s: float = 0.0
    left_channels: int | None = None
    left_bridges: int | None = None
    left_sample: list[str] = field(default_factory=list)
    asterisk_log: dict[str, int] = field(default_factory=dict)  # WARNING/ERROR lines of the round -> count
    app_log: dict[str, int] = field(default_factory=dict)
    app_exit: int | None = None
    tcp: dict[str, int] = field(default_factory=dict)  # TCP counters of the namespace over the round (deltas)
    sipp_exit: dict[str, int | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # findings: the app died, ARI did not answer, ...
    harness_errors: list[str] = field(default_factory=list)  # the run could not be measured
    round: int = 1  # of bench-load --repeat

    def label(self, repeat: int = 1) -> str:
        """The mode's name, with its round when there are several (``app#2``)."""
        return self.mode if repeat == 1 else f"{self.mode}#{self.round}"

    def _per_transfer_ms(self, seconds: float | None) -> float | None:
        transfers = self.refers or self.placed
        return None if seconds is None or not transfers else round(seconds * 1000 / transfers, 2)

    def summary(self) -> dict[str, float | None]:
        ordered = sorted(self.latencies_ms)
        return {
            "completed_pct": round(100 * self.completed / self.calls, 1) if self.calls else None,
            "offered_rate": round((self.placed - 1) / self.placing_s, 1) if self.placing_s > 0 else None,
            "latency_p50_ms": round(statistics.median(ordered), 2) if ordered else None,
            "latency_p90_ms": _percentile(ordered, 0.9),
            "latency_max_ms": ordered[-1] if ordered else None,
            "app_cpu_ms_per_transfer": self._per_transfer_ms(self.app_cpu_s),
            "asterisk_cpu_ms_per_transfer": self._per_transfer_ms(self.asterisk_cpu_s),
        }

    def ratios(self, core: ModeResult) -> dict[str, float | None]:
        """This (app) run's figures over the core run's."""
        mine, theirs = self.summary(), core.summary()

        def ratio(a: float | None, b: float | None) -> float | None:
            return None if a is None or not b else round(a / b, 2)

        return {
            "completed": ratio(mine["completed_pct"], theirs["completed_pct"]),
            "latency_p50": ratio(mine["latency_p50_ms"], theirs["latency_p50_ms"]),
            "latency_p90": ratio(mine["latency_p90_ms"], theirs["latency_p90_ms"]),
            "latency_max": ratio(mine["latency_max_ms"], theirs["latency_max_ms"]),
            "asterisk_cpu": ratio(mine["asterisk_cpu_ms_per_transfer"], theirs["asterisk_cpu_ms_per_transfer"]),
            "app_cpu_to_core_asterisk_cpu": ratio(
                mine["app_cpu_ms_per_transfer"], theirs["asterisk_cpu_ms_per_transfer"]
            ),
        }

    def findings(self) -> list[str]:
        """Lines worth reading under the table: failures, leftovers, log complaints, harness errors."""
        lines = [f"HARNESS: {error}" for error in self.harness_errors] + list(self.notes)
        offered = self.summary()["offered_rate"]
        lines.append(
            f"placed {self.placed} of {self.calls} in {self.placing_s:.1f} s ({_num(offered)} calls/s), "
            f"{self.refers} REFERs, {self.completed} completed; sipp exit {self.sipp_exit}"
        )
        if self.machine_idle_pct is not None and self.machine_steal_pct is not None:
            lines.append(
                f"the machine over the round: {self.machine_idle_pct:.0f} % of its CPU idle, "
                f"{self.machine_steal_pct:.1f} % taken by other guests (steal)"
            )
        if self.refused:
            accepted = self.placed - self.refused
            share = f"{100 * self.completed / accepted:.1f} %" if accepted else "-"
            lines.append(f"refused with 503: {self.refused}; of the {accepted} calls accepted, {share} completed")
        lines += [f"not completed: {count} x {why}" for why, count in sorted(self.failures.items())]
        if self.unpaired:
            lines.append(f"{self.unpaired} dialogs at Bob or Carol carried no name Alice sent")
        lines += [f"left in Asterisk: {item}" for item in self.left_sample]
        if any(self.tcp.values()):
            lines.append("TCP (ARI's connections): " + ", ".join(f"{k} {v}" for k, v in self.tcp.items() if v))
        lines += [f"Asterisk log: {n} x {text}" for text, n in Counter(self.asterisk_log).most_common(5)]
        if self.mode == "app":
            lines += [f"app log: {n} x {text}" for text, n in Counter(self.app_log).most_common(5)]
            if self.app_exit not in (0, None):
                lines.append(f"the app's exit status: {self.app_exit} (0 expected after SIGTERM)")
        return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _percentile(ordered: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def analyse_calls(result: ModeResult, alice_msgs: Path, bob_msgs: Path, carol_msgs: Path) -> None:
    """Pair the phones' dialogs by caller name and fill in ``result``'s call counts, latencies and failures."""
    calls: dict[str, Call] = {}
    invites: list[float] = []
    for call_id, messages in _dialogs(parse_sipp_messages(alice_msgs)).items():
        invite = next((m for m in messages if m.sent and m.is_request and m.method == "INVITE"), None)
        if invite is None:
            continue
        name = _display_name(invite)
        if not name or name in calls:
            result.notes.append(f"Alice's dialog {call_id} has no name of its own ({name!r})")
            continue
        invites.append(invite.ts)
        call = calls[name] = Call(name)
        call.alice_answered = any(_response(m, "INVITE", 200, sent=False) for m in messages)
        call.alice_refused = any(_response(m, "INVITE", 503, sent=False) for m in messages)
        call.alice_hung_up = any(_response(m, "BYE", 200, sent=False) for m in messages)
        call.alice_remote_bye = any(not m.sent and m.is_request and m.method == "BYE" for m in messages)
    result.placed = len(invites)
    result.placing_s = round(max(invites) - min(invites), 3) if invites else 0.0
    for messages in _dialogs(parse_sipp_messages(bob_msgs)).values():
        if (bob := _call_of(calls, messages)) is None:
            result.unpaired += 1
            continue
        refer = next((m for m in messages if m.sent and m.is_request and m.method == "REFER"), None)
        bob.refer_ts = None if refer is None else refer.ts
        bob.refer_202 = any(_response(m, "REFER", 202, sent=False) for m in messages)
        final = next((m for m in messages if _notify(m) and _terminated(m)), None)
        bob.final_sipfrag = None if final is None else _sipfrag(final)
    for messages in _dialogs(parse_sipp_messages(carol_msgs)).values():
        if (carol := _call_of(calls, messages)) is None:
            result.unpaired += 1
            continue
        carol.carol_invite_ts = messages[0].ts
        carol.carol_answered = any(_response(m, "INVITE", 200, sent=True) for m in messages) and any(
            not m.sent and m.method == "ACK" for m in messages
        )
        carol.carol_bye = any(not m.sent and m.is_request and m.method == "BYE" for m in messages)
    result.refused = sum(call.alice_refused for call in calls.values())
    result.refers = sum(call.refer_ts is not None for call in calls.values())
    result.completed = sum(call.completed for call in calls.values())
    result.latencies_ms = sorted(ms for call in calls.values() if (ms := call.latency_ms) is not None)
    result.failures = dict(Counter(why for call in calls.values() if (why := call.failure) is not None))
    if missing := result.calls - result.placed:
        result.failures["Alice placed no call"] = missing


def _dialogs(messages: list[SipMessage]) -> dict[str, list[SipMessage]]:
    """The messages of each Call-ID, in order, without retransmissions."""
    dialogs: dict[str, list[SipMessage]] = {}
    for message in messages:
        if not message.retransmission and message.call_id:
            dialogs.setdefault(message.call_id, []).append(message)
    return dialogs


def _call_of(calls: dict[str, Call], messages: list[SipMessage]) -> Call | None:
    """The call a dialog Asterisk opened (by the INVITE it sent) belongs to."""
    first = messages[0]
    if first.sent or first.method != "INVITE":
        return None
    return calls.get(_display_name(first) or "")


def _display_name(message: SipMessage) -> str | None:
    match = _DISPLAY_NAME.match(message.headers.get("from", ""))
    return match.group(1) if match else None


def _response(message: SipMessage, method: str, status: int, *, sent: bool) -> bool:
    return message.sent == sent and not message.is_request and message.method == method and message.status == status


def _notify(message: SipMessage) -> bool:
    return not message.sent and message.is_request and message.method == "NOTIFY"


def _terminated(message: SipMessage) -> bool:
    return message.headers.get("subscription-state", "").lower().startswith("terminated")


def _sipfrag(message: SipMessage) -> int | None:
    match = re.match(r"SIP/2\.0 (\d{3})", message.body)
    return int(match.group(1)) if match else None


def read_log_complaints(path: Path, offset: int, *, asterisk: bool) -> dict[str, int]:
    """WARNING/ERROR lines of a log from byte ``offset`` on, grouped by their text with numbers and ids masked."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return {}
    pattern = _ASTERISK_LINE if asterisk else _APP_LINE
    complaints: Counter[str] = Counter()
    for line in text.splitlines():
        if match := pattern.match(line):
            complaints[f"{match.group(1)} {_VARYING.sub('#', match.group(2))[:200]}"] += 1
        elif not asterisk and line.startswith("Traceback"):
            complaints["Traceback"] += 1
    return dict(complaints)
