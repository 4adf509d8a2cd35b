"""The ARI contract: scripts of REST requests with the status Asterisk answers and the events it sends, each
channel's in order. The same scripts run against the fake Asterisk (tests/test_contract.py) and against the
sandbox Asterisk 22.10.1 (tests/e2e/test_contract_e2e.py), so the fake cannot drift from the real thing.

Channels are named by role (``carol``, ``bob``, ``Local;1``, ``Local;2``) and written ``{carol}`` in paths and
queries; a runner gives each a fresh id (``channelId``) or learns it from the events (``Local;2``). Events are
reduced to what the engine acts on (:func:`step`); ringing (``Dial RINGING``, ``ChannelStateChange Ringing``)
is left out, because its order against the other leg's events depends on the phone.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from stasis_app.ari.protocol import Transport

Step = tuple[str, ...]

Behaviour = Literal["answer", "busy", "noanswer", "transferor"]


def role(channel: dict[str, Any]) -> str:
    """``PJSIP/alice-00000001`` -> ``alice``; ``Local/1002@rcml-00000002;2`` -> ``Local;2``."""
    name = channel["name"]
    if name.startswith("Local/"):
        return "Local;" + name.rsplit(";", 1)[1]
    return name.split("/", 1)[1].rsplit("-", 1)[0]


def step(event: dict[str, Any]) -> Step:
    """One event as the engine sees it, without ids, names or times."""
    kind = event["type"]
    match kind:
        case "StasisStart":
            channel = event["channel"]
            return (kind, role(channel), channel["state"], ",".join(event["args"]))
        case "StasisEnd" | "ChannelEnteredBridge" | "ChannelLeftBridge":
            return (kind, role(event["channel"]))
        case "ChannelStateChange":
            return (kind, role(event["channel"]), event["channel"]["state"])
        case "Dial":
            return (kind, role(event["peer"]), event["dialstatus"])
        case "ChannelHangupRequest":
            return (kind, role(event["channel"]), str(event.get("cause")), str(event.get("soft")))
        case "ChannelDestroyed":
            return (kind, role(event["channel"]), str(event["cause"]))
        case "ChannelTransfer":
            return (kind, role(event["referred_by"]["source_channel"]), str(event.get("state")))
        case "PlaybackStarted" | "PlaybackFinished":
            playback = event["playback"]
            return (kind, playback["media_uri"], playback["state"])
        case "BridgeDestroyed":
            return (kind,)
        case _:
            return (kind, "?")


def _ringing(one: Step) -> bool:
    return one[0] in ("Dial", "ChannelStateChange") and one[-1] in ("RINGING", "Ringing")


@dataclass(frozen=True)
class Phone:
    """A SIP phone the script dials: ``answer`` (at once), ``busy`` (486), ``noanswer`` (rings forever), or
    ``transferor`` (answers, then REFERs ``target``)."""

    name: str
    behaviour: Behaviour
    target: str = "1002"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    status: int | tuple[int, ...] = 204  # a tuple: any of these (Asterisk's answer depends on timing)


@dataclass(frozen=True)
class Events:
    """Wait until the channel's events so far (ringing left out) are exactly ``steps``."""

    channel: str
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Refer:
    """The transferor phone sends its REFER now (the real one does it by itself, after a set delay)."""

    channel: str
    target: str


@dataclass(frozen=True)
class Scenario:
    name: str
    phones: tuple[Phone, ...]
    script: tuple[Request | Events | Refer, ...]


class Asterisk(Protocol):
    """What a runner needs of an Asterisk, real or fake."""

    transport: Transport
    app: str
    events: list[dict[str, Any]]

    async def phone(self, phone: Phone) -> None: ...

    async def refer(self, channel_id: str, target: str) -> None: ...


def _originate(name: str, endpoint: str, timeout: int = 10) -> Request:
    query = {"endpoint": endpoint, "app": "{app}", "appArgs": "dial", "channelId": f"{{{name}}}"}
    return Request("POST", "/channels", query | {"timeout": str(timeout)}, 200)


ANSWERED = (("Dial", "carol", ""), ("ChannelStateChange", "carol", "Up"), ("Dial", "carol", "ANSWER"))
UP = (*ANSWERED, ("StasisStart", "carol", "Up", "dial"))
BOB_UP = tuple((kind, "bob", *rest) for kind, _carol, *rest in UP)
HUNG_UP_IN_BRIDGE = (
    ("ChannelHangupRequest", "carol", "32", "True"),
    ("ChannelLeftBridge", "carol"),
    ("StasisEnd", "carol"),
    ("ChannelDestroyed", "carol", "16"),
)

MISSING_MEDIA = "sound:http://127.0.0.1:9/missing.wav"
PLAYBACK_FAILED = (("PlaybackStarted", MISSING_MEDIA, "playing"), ("PlaybackFinished", MISSING_MEDIA, "failed"))

SCENARIOS = (
    Scenario(
        "originate, answer, bridge, hang up",
        (Phone("carol", "answer"),),
        (
            Request("POST", "/bridges/{b}", {"type": "mixing", "name": "rcml-contract"}, 200),
            _originate("carol", "PJSIP/carol"),
            Events("carol", UP),
            Request("POST", "/bridges/{b}/addChannel", {"channel": "{carol}"}),
            Events("carol", (*UP, ("ChannelEnteredBridge", "carol"))),
            # The ringback of a transfer: on an answered channel, the ring tone in-band, and no event.
            Request("POST", "/channels/{carol}/ring"),
            Request("DELETE", "/channels/{carol}/ring"),
            Events("carol", (*UP, ("ChannelEnteredBridge", "carol"))),
            Request("DELETE", "/channels/{carol}", {"reason": "normal"}),
            Events("carol", (*UP, ("ChannelEnteredBridge", "carol"), *HUNG_UP_IN_BRIDGE)),
            Request("DELETE", "/channels/{carol}", {"reason": "normal"}, 404),
            Request("DELETE", "/channels/{carol}/ring", {}, 404),
            Request("POST", "/bridges/{b}/addChannel", {"channel": "{carol}"}, 400),
            Request("DELETE", "/bridges/{b}"),
            # Right after the destroy, Asterisk 22.10.1 may still hold the bridge's snapshot: 409 "Bridge not in
            # Stasis application" then, 404 once it is gone. The engine takes either as gone (CallGone).
            Request("DELETE", "/bridges/{b}", {}, (404, 409)),
        ),
    ),
    Scenario(
        "busy",
        (Phone("carol", "busy"),),
        (
            _originate("carol", "PJSIP/carol"),
            Events(
                "carol",
                (
                    ("Dial", "carol", ""),
                    ("ChannelHangupRequest", "carol", "17", "None"),
                    ("Dial", "carol", "BUSY"),
                    ("ChannelDestroyed", "carol", "17"),
                ),
            ),
            Request("POST", "/channels/{carol}/answer", {}, 404),
        ),
    ),
    Scenario(
        "no answer: the originate's timeout",
        (Phone("carol", "noanswer"),),
        (
            _originate("carol", "PJSIP/carol", timeout=1),
            Events("carol", (("Dial", "carol", ""), ("ChannelDestroyed", "carol", "19"))),
        ),
    ),
    Scenario(
        "Local channel into the Stasis context",
        (),
        (
            _originate("Local;1", "Local/1002@rcml/n"),
            Events("Local;2", (("StasisStart", "Local;2", "Ring", ""),)),
            Events("Local;1", (("Dial", "Local;1", ""),)),
            Request("POST", "/channels/{Local;2}/answer"),
            Events(
                "Local;1",
                (
                    ("Dial", "Local;1", ""),
                    ("ChannelStateChange", "Local;1", "Up"),
                    ("Dial", "Local;1", "ANSWER"),
                    ("StasisStart", "Local;1", "Up", "dial"),
                ),
            ),
            Request("DELETE", "/channels/{Local;1}", {"reason": "normal"}),
            Events(
                "Local;1",
                (
                    ("Dial", "Local;1", ""),
                    ("ChannelStateChange", "Local;1", "Up"),
                    ("Dial", "Local;1", "ANSWER"),
                    ("StasisStart", "Local;1", "Up", "dial"),
                    ("ChannelHangupRequest", "Local;1", "32", "True"),
                    ("StasisEnd", "Local;1"),
                    ("ChannelDestroyed", "Local;1", "16"),
                ),
            ),
            Events(
                "Local;2",
                (
                    ("StasisStart", "Local;2", "Ring", ""),
                    ("ChannelStateChange", "Local;2", "Up"),
                    ("ChannelHangupRequest", "Local;2", "16", "None"),
                    ("StasisEnd", "Local;2"),
                    ("ChannelHangupRequest", "Local;2", "16", "True"),
                    ("ChannelDestroyed", "Local;2", "16"),
                ),
            ),
        ),
    ),
    Scenario(
        "a REFER, declined",
        (Phone("bob", "transferor"),),
        (
            Request("POST", "/bridges/{b}", {"type": "mixing", "name": "rcml-contract"}, 200),
            _originate("bob", "PJSIP/bob"),
            Events("bob", BOB_UP),
            Request("POST", "/bridges/{b}/addChannel", {"channel": "{bob}"}),
            Refer("bob", "1002"),
            Events("bob", (*BOB_UP, ("ChannelEnteredBridge", "bob"), ("ChannelTransfer", "bob", "None"))),
            Request("POST", "/channels/{bob}/transfer_progress", {"states": "channel_declined"}),
            Events(
                "bob",
                (
                    *BOB_UP,
                    ("ChannelEnteredBridge", "bob"),
                    ("ChannelTransfer", "bob", "None"),
                    ("ChannelTransfer", "bob", "channel_declined"),
                ),
            ),
            Request("DELETE", "/channels/{bob}", {"reason": "normal"}),
            Request("DELETE", "/bridges/{b}"),
        ),
    ),
)


SCENARIOS += (
    Scenario(
        # The Dial bridges its caller and callee in one request: ARI's channel parameter takes a list. Every
        # channel is looked up first; one missing refuses the request (400) and nobody enters.
        "two channels into a bridge in one request, or none",
        (Phone("carol", "answer"), Phone("bob", "answer")),
        (
            Request("POST", "/bridges/{b}", {"type": "mixing", "name": "rcml-contract"}, 200),
            _originate("carol", "PJSIP/carol"),
            _originate("bob", "PJSIP/bob"),
            Events("carol", UP),
            Events("bob", BOB_UP),
            Request("POST", "/bridges/{b}/addChannel", {"channel": "{carol},no-such-channel"}, 400),
            Request("POST", "/bridges/{b}/addChannel", {"channel": "{carol},{bob}"}),
            Events("carol", (*UP, ("ChannelEnteredBridge", "carol"))),
            Events("bob", (*BOB_UP, ("ChannelEnteredBridge", "bob"))),
            Request("DELETE", "/channels/{carol}", {"reason": "normal"}),
            Request("DELETE", "/channels/{bob}", {"reason": "normal"}),
            Events("carol", (*UP, ("ChannelEnteredBridge", "carol"), *HUNG_UP_IN_BRIDGE)),
            Request("DELETE", "/bridges/{b}"),
        ),
    ),
    Scenario(
        # Asterisk's HTTP media cache cannot fetch the URL (nothing listens on port 9 in the private network):
        # the playback starts, then finishes "failed" (no PlaybackFailed event); a 404 ends the same way.
        "a media URL that cannot be fetched",
        (Phone("carol", "answer"),),
        (
            _originate("carol", "PJSIP/carol"),
            Events("carol", UP),
            Request("POST", "/channels/{carol}/play/{pb}", {"media": MISSING_MEDIA}, 201),
            Events("carol", (*UP, *PLAYBACK_FAILED)),
            Request("DELETE", "/channels/{carol}", {"reason": "normal"}),
            Events(
                "carol",
                (
                    *UP,
                    *PLAYBACK_FAILED,
                    ("ChannelHangupRequest", "carol", "32", "True"),
                    ("StasisEnd", "carol"),
                    ("ChannelDestroyed", "carol", "16"),
                ),
            ),
        ),
    ),
)


class Runner:
    """Plays one scenario on an :class:`Asterisk`; raises AssertionError at the first difference."""

    def __init__(self, asterisk: Asterisk, *, timeout: float = 10.0) -> None:
        self.asterisk = asterisk
        self.timeout = timeout
        self.ids: dict[str, str] = {"app": asterisk.app}
        self.run = uuid.uuid4().hex[:8]

    async def play(self, scenario: Scenario) -> None:
        for phone in scenario.phones:
            await self.asterisk.phone(phone)
        for index, item in enumerate(scenario.script):
            where = f"{scenario.name}, step {index + 1}"
            match item:
                case Request(method=method, path=path, query=query, status=expected):
                    status, body = await self.asterisk.transport.request(
                        method, self._fill(path), {k: self._fill(v) for k, v in query.items()}
                    )
                    allowed = expected if isinstance(expected, tuple) else (expected,)
                    assert status in allowed, f"{where}: {method} {path} -> {status} {body[:200]!r}, not {expected}"
                case Events(channel=channel, steps=steps):
                    await self._until(lambda c=channel: self._steps(c) == list(steps), where, channel, steps)
                case Refer(channel=channel, target=target):
                    await self.asterisk.refer(self.ids[channel], target)

    def _fill(self, text: str) -> str:
        return re.sub(r"\{([^}]+)\}", lambda m: self._id(m.group(1)), text)

    def _id(self, name: str) -> str:
        if name not in self.ids:
            learned = [event for event in self.asterisk.events if _channel_role(event) == name]
            channel = _channel_of(learned[0]) if learned else None
            self.ids[name] = channel["id"] if channel else f"ct{self.run}-{name.replace(';', '-')}"
        return self.ids[name]

    def _steps(self, channel: str) -> list[Step]:
        steps = [step(event) for event in self.asterisk.events if self._role(event) == channel]
        return [one for one in steps if not _ringing(one)]

    def _role(self, event: dict[str, Any]) -> str | None:
        if "playback" in event:  # a playback names its channel by id only: the one this script gave that id
            target = event["playback"]["target_uri"].removeprefix("channel:")
            return next((name for name, known in self.ids.items() if known == target), None)
        return _channel_role(event)

    async def _until(self, done: Callable[[], bool], where: str, channel: str, steps: tuple[Step, ...]) -> None:
        deadline = time.monotonic() + self.timeout
        while not done():
            if time.monotonic() > deadline:
                seen = "\n  ".join(map(str, self._steps(channel)))
                want = "\n  ".join(map(str, steps))
                raise AssertionError(f"{where}: {channel}'s events\n  {seen}\nnot\n  {want}")
            await asyncio.sleep(0.01)


def _channel_of(event: dict[str, Any]) -> dict[str, Any] | None:
    if event["type"] == "Dial":
        return event.get("peer")
    if event["type"] == "ChannelTransfer":
        return event.get("referred_by", {}).get("source_channel")
    return event.get("channel")


def _channel_role(event: dict[str, Any]) -> str | None:
    channel = _channel_of(event)
    return role(channel) if channel else None
