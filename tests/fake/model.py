"""The data of the fake Asterisk: scripted phones, channels, bridges, playbacks, REFER subscriptions, and
the tables and parsers saying what Asterisk makes of a hangup reason, a cause, a caller id or a Refer-To."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.fake.events import timestamp

# DELETE /channels/{id}?reason= -> the Q.850 cause Asterisk puts on the channel (resource_channels.c).
HANGUP_REASON_CAUSE: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}

# The Dial event's dialstatus when a dialed leg fails with a cause (assumed; see the asterisk.py docstring).
_DIAL_STATUS: dict[int, str] = {17: "BUSY", 18: "NOANSWER", 19: "NOANSWER"}
_CONGESTION_CAUSES = frozenset({21, 34, 38, 41, 42})

REFER_USER_MAX = 79  # Asterisk silently cuts the Refer-To user part to its first 79 characters


def dial_status(cause: int) -> str:
    if cause in _DIAL_STATUS:
        return _DIAL_STATUS[cause]
    return "CONGESTION" if cause in _CONGESTION_CAUSES else "CHANUNAVAIL"


def parse_caller_id(caller_id: str | None) -> dict[str, str]:
    """``"alice" <1001>``, ``alice <1001>``, ``1001``, ``alice`` -> name and number (ast_callerid_parse)."""
    if not caller_id:
        return {"name": "", "number": ""}
    match = re.fullmatch(r'\s*"?([^"<]*?)"?\s*<([^>]*)>\s*', caller_id)
    if match:
        return {"name": match.group(1), "number": match.group(2)}
    if re.fullmatch(r"[+0-9*#]+", caller_id.strip()):
        return {"name": "", "number": caller_id.strip()}
    return {"name": caller_id.strip(), "number": ""}


def refer_user_part(refer_to: str) -> str | None:
    """What Asterisk puts in ``requested_destination.destination`` for a Refer-To; None = it answers 400.

    ``<sip:1002@host;user=phone?X-Foo=bar>`` -> ``1002``; ``%26PJSIP%2Fcarol`` -> ``&PJSIP/carol``; a bare
    ``carol`` is taken as the user part itself; ``tel:`` URIs are refused.
    """
    uri = refer_to.strip()
    if uri.startswith("<") and ">" in uri:
        uri = uri[1 : uri.index(">")]
    scheme, colon, rest = uri.partition(":")
    if colon and scheme.lower() == "tel":
        return None
    user = uri  # a bare user part
    if colon and scheme.lower() in ("sip", "sips"):
        user = rest.split("@", 1)[0] if "@" in rest else ""
    return unquote(user)[:REFER_USER_MAX]


@dataclass
class Phone:
    """How a dialed endpoint behaves. Busy / rejecting phones give their final answer after ``answer_after``
    (0 when None); a phone that answers hangs up by itself ``hangup_after`` seconds later, if set."""

    endpoint: str
    answer_after: float | None = 0.01
    busy: bool = False
    reject_cause: int | None = None
    ring: bool = True
    hangup_after: float | None = None


@dataclass
class FakeChannel:
    id: str
    name: str
    state: str
    protocol_id: str
    caller: dict[str, str]
    connected: dict[str, str]
    dialplan: dict[str, Any]
    endpoint: str  # "PJSIP/bob", "Local/1002@rcml/n"
    creationtime: str = field(default_factory=timestamp)
    dialstring: str = ""  # what the Dial events name: the endpoint without its technology
    app_args: str | None = None  # originated by the app (its StasisStart args); None = came in from dialplan
    subscribed: bool = False  # the app originated it: it also hears ChannelDestroyed (and events after StasisEnd)
    in_stasis: bool = False
    dialing: bool = False  # originated and not answered yet
    bridge_id: str | None = None
    local_half: int | None = None  # 1 or 2 for a Local channel
    local_peer: str | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)


@dataclass
class FakeBridge:
    id: str
    name: str
    channels: list[str] = field(default_factory=list)
    creationtime: str = field(default_factory=timestamp)


@dataclass
class FakePlayback:
    id: str
    channel_id: str
    media: str
    state: str = "playing"
    timer: asyncio.TimerHandle | None = None
    kind: str = "channel"  # or "bridge": then channel_id is the bridge's id


@dataclass
class ReferSubscription:
    """The implicit subscription a REFER opens: what was asked and the sipfrags the phone got in NOTIFYs."""

    channel_id: str
    refer_to: dict[str, Any]
    notifies: list[int] = field(default_factory=list)
    terminated: bool = False


def outgoing_dialplan(context: str, exten: str = "s") -> dict[str, Any]:
    return {
        "context": context,
        "exten": exten,
        "priority": 1,
        "app_name": "AppDial2",
        "app_data": "(Outgoing Line)",
    }
