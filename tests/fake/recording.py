"""Recordings in the fake Asterisk: ``POST /channels/{id}/record``, live ones stopped or ended, stored ones kept.

What it copies from Asterisk 22.10.1 (tests/e2e/test_media_e2e.py, the sandbox's event stream):

- record answers the LiveRecording (state "queued"), then ``RecordingStarted`` (state "recording");
- a stop (``POST /recordings/live/{name}/stop``), ``maxDurationSeconds`` or ``maxSilenceSeconds`` of silence
  ends it with ``RecordingFinished`` (state "done", ``duration`` = ``talking_duration``, whole seconds, the
  trailing silence trimmed, ``silence_duration`` 0); the recording is then stored under its name;
- the caller hanging up: ``ChannelHangupRequest``, ``RecordingFinished`` (done, what was said so far), then
  ``StasisEnd``: the recording is kept;
- no recording spool (a full or missing disk): record answers 500 and no event follows.

``POST /bridges/{id}/record`` (a Dial's ``record``) records the bridge's mix: ``target_uri`` ``bridge:ID``, the
same events (seen on the sandbox: RecordingStarted "recording", then RecordingFinished "done" with only
``duration``, the whole time it ran, untrimmed); no ChannelEnteredBridge reaches the app for Asterisk's
``Recorder/`` channel. It ends when stopped; destroying the bridge ends it too (assumed, as a hangup does).

Assumptions: a bridged channel answers 409 (ARI's documented reason), as does a name already stored or live;
``DELETE /recordings/live/{name}`` cancels (RecordingFinished, state "canceled", nothing stored); a failing
recording (:meth:`Recordings.fail`) sends ``RecordingFailed`` with a ``cause`` and stores nothing.

Time: the fake's seconds are ``scale`` times shorter than the reported ones, so a "5 s" recording takes 50 ms
with ``scale = 100``. A caller talks for ``talk`` reported seconds (:meth:`Recordings.talks`), then is silent;
by default it talks without end.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fake.model import FakeChannel


class RecordingRefused(Exception):
    """The record request gets this status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class FakeRecording:
    name: str
    channel_id: str  # or the bridge's id, for a bridge recording
    format: str
    started: float
    kind: str = "channel"  # or "bridge"
    state: str = "queued"
    duration: int | None = None
    cause: str | None = None
    timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "format": self.format,
            "state": self.state,
            "target_uri": f"{self.kind}:{self.channel_id}",
        }
        if self.duration is not None and self.kind == "bridge":
            data["duration"] = self.duration  # 22.10.1 gives a bridge recording no talking/silence durations
        elif self.duration is not None:
            data |= {"duration": self.duration, "talking_duration": self.duration, "silence_duration": 0}
        if self.cause is not None:
            data["cause"] = self.cause
        return data


class Recordings:
    """Live and stored recordings; ``event(type, **fields)`` emits an event in the stream's order."""

    def __init__(self, event: Callable[..., None], later: Callable[..., asyncio.TimerHandle]) -> None:
        self._event = event
        self._later = later
        self.scale = 1.0
        self.refuse: str | None = None  # e.g. "Internal Server Error": no spool, a full disk
        self.live: dict[str, FakeRecording] = {}
        self.stored: dict[str, FakeRecording] = {}
        self.beeps: list[str] = []  # the recordings that began with a beep
        self._talk: dict[str, float] = {}

    def talks(self, channel_id: str, seconds: float) -> None:
        """The caller on ``channel_id`` talks for ``seconds`` (reported) from the next recording's start."""
        self._talk[channel_id] = seconds

    def start(self, ch: FakeChannel, params: dict[str, Any]) -> dict[str, Any]:
        name, fmt = str(params.get("name", "")), str(params.get("format", ""))
        if not name or not fmt:
            raise RecordingRefused(400, "Recording name and format are required")
        if fmt not in ("wav", "gsm", "ulaw", "alaw", "sln"):
            raise RecordingRefused(422, f"Unknown format: {fmt}")
        if ch.bridge_id is not None:
            raise RecordingRefused(409, "Channel is currently bridged")
        return self._start(FakeRecording(name, ch.id, fmt, asyncio.get_running_loop().time()), params)

    def start_bridge(self, bridge_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """``POST /bridges/{id}/record``: the bridge's mix."""
        name, fmt = str(params.get("name", "")), str(params.get("format", ""))
        if not name or not fmt:
            raise RecordingRefused(400, "Recording name and format are required")
        if fmt not in ("wav", "gsm", "ulaw", "alaw", "sln"):
            raise RecordingRefused(422, f"Unknown format: {fmt}")
        rec = FakeRecording(name, bridge_id, fmt, asyncio.get_running_loop().time(), kind="bridge")
        return self._start(rec, params)

    def _start(self, rec: FakeRecording, params: dict[str, Any]) -> dict[str, Any]:
        name = rec.name
        if name in self.live or name in self.stored:
            raise RecordingRefused(409, "Recording already exists")
        if self.refuse is not None:
            raise RecordingRefused(500, self.refuse)
        self.live[name] = rec
        answer = rec.json()
        rec.state = "recording"
        if params.get("beep") == "true":
            self.beeps.append(name)
        self._event("RecordingStarted", recording=rec.json())
        max_duration = int(params.get("maxDurationSeconds", 0))
        max_silence = int(params.get("maxSilenceSeconds", 0))
        talk = self._talk.get(rec.channel_id, math.inf) if rec.kind == "channel" else math.inf
        if max_duration:
            rec.timers.append(self._later(max_duration / self.scale, self.finish, name))
        if max_silence and talk + max_silence < (max_duration or math.inf):
            rec.timers.append(self._later((talk + max_silence) / self.scale, self.finish, name, talk))
        return answer

    def finish(self, name: str, talked: float | None = None) -> None:
        """End a live recording now (stop, a limit, a hangup): it is stored with what was said."""
        rec = self._end(name)
        if rec is None:
            return
        elapsed = (asyncio.get_running_loop().time() - rec.started) * self.scale
        said = elapsed if rec.kind == "bridge" else min(elapsed, self._talk.get(rec.channel_id, math.inf))
        rec.state, rec.duration = "done", int(talked if talked is not None else said)
        self.stored[name] = rec
        self._event("RecordingFinished", recording=rec.json())

    def cancel(self, name: str) -> None:
        rec = self._end(name)
        if rec is not None:
            rec.state = "canceled"
            self._event("RecordingFinished", recording=rec.json())

    def fail(self, name: str, cause: str = "Recording failed") -> None:
        """A live recording fails (the disk filled up): RecordingFailed, nothing stored."""
        rec = self._end(name)
        if rec is not None:
            rec.state, rec.cause = "failed", cause
            self._event("RecordingFailed", recording=rec.json())

    def hung_up(self, ch: FakeChannel) -> None:
        """``ch`` hangs up: its recording ends and is kept (between the hangup request and StasisEnd)."""
        for name in [name for name, rec in self.live.items() if rec.channel_id == ch.id and rec.kind == "channel"]:
            self.finish(name)

    def bridge_destroyed(self, bridge_id: str) -> None:
        """A bridge is destroyed: its recordings end and are kept."""
        for name in [name for name, rec in self.live.items() if rec.channel_id == bridge_id and rec.kind == "bridge"]:
            self.finish(name)

    def _end(self, name: str) -> FakeRecording | None:
        rec = self.live.pop(name, None)
        if rec is not None:
            for handle in rec.timers:
                handle.cancel()
        return rec
