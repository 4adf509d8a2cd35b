"""Every event dict the fake Asterisk sends, shaped like Asterisk 22.10.1's (see /work/shared/traces).

One builder per event type, so the shape of a message lives in one place. The snapshots come from the
switch's live objects (:mod:`tests.fake.switch`), taken at the moment the event is built, as Asterisk does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fake.model import FakeBridge, FakeChannel, FakePlayback

ASTERISK_ID = "02:fc:00:00:00:01"

# ast_cause2str() for the causes the fake produces.
CAUSE_TEXT: dict[int, str] = {
    1: "Unallocated (unassigned) number",
    3: "No route to destination",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    58: "Bearer capability not available",
    127: "Interworking, unspecified",
}


def timestamp(at: datetime | None = None) -> str:
    """Asterisk's ARI timestamp: ``2026-11-24T05:18:22.446+0000``."""
    at = at or datetime.now(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}+0000"


def channel_json(ch: FakeChannel) -> dict[str, Any]:
    return {
        "id": ch.id,
        "name": ch.name,
        "state": ch.state,
        "protocol_id": ch.protocol_id,
        "caller": dict(ch.caller),
        "connected": dict(ch.connected),
        "accountcode": "",
        "dialplan": dict(ch.dialplan),
        "creationtime": ch.creationtime,
        "language": "en",
    }


def bridge_json(br: FakeBridge) -> dict[str, Any]:
    return {
        "id": br.id,
        # Asterisk swaps technology as the bridge grows: simple_bridge for two, softmix for three (traces).
        "technology": "simple_bridge" if len(br.channels) <= 2 else "softmix",
        "bridge_type": "mixing",
        "bridge_class": "stasis",
        "creator": "Stasis",
        "name": br.name,
        "channels": list(br.channels),
        "creationtime": br.creationtime,
        "video_mode": "talker",
    }


def playback_json(pb: FakePlayback) -> dict[str, Any]:
    return {
        "id": pb.id,
        "media_uri": pb.media,
        "target_uri": f"{pb.kind}:{pb.channel_id}",
        "language": "en",
        "state": pb.state,
    }


class EventBuilder:
    """Builds the websocket messages of one Stasis application."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.stamp: str | None = None  # the next event's timestamp, when a test sets one (an event that queued)

    def _event(self, type_: str, **fields: Any) -> dict[str, Any]:
        stamp, self.stamp = self.stamp, None
        return {
            "type": type_,
            "timestamp": stamp or timestamp(),
            **fields,
            "asterisk_id": ASTERISK_ID,
            "application": self.app,
        }

    def event(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Any event of this application, with the common fields."""
        return self._event(type_, **fields)

    def stasis_start(self, ch: FakeChannel, args: list[str]) -> dict[str, Any]:
        return self._event("StasisStart", args=list(args), channel=channel_json(ch))

    def stasis_end(self, ch: FakeChannel) -> dict[str, Any]:
        return self._event("StasisEnd", channel=channel_json(ch))

    def state_change(self, ch: FakeChannel) -> dict[str, Any]:
        return self._event("ChannelStateChange", channel=channel_json(ch))

    def dial(self, peer: FakeChannel, status: str) -> dict[str, Any]:
        # An ARI originate has no calling channel, so Asterisk sends no "caller".
        return self._event("Dial", dialstatus=status, forward="", dialstring=peer.dialstring, peer=channel_json(peer))

    def hangup_request(self, ch: FakeChannel, cause: int | None = None, soft: bool | None = None) -> dict[str, Any]:
        # The phone hanging up gives no cause; a REST DELETE gives cause=32 (AST_SOFTHANGUP_EXPLICIT), soft.
        fields: dict[str, Any] = {}
        if cause is not None:
            fields["cause"] = cause
        if soft is not None:
            fields["soft"] = soft
        return self._event("ChannelHangupRequest", **fields, channel=channel_json(ch))

    def destroyed(self, ch: FakeChannel, cause: int) -> dict[str, Any]:
        return self._event(
            "ChannelDestroyed",
            cause=cause,
            cause_txt=CAUSE_TEXT.get(cause, "Unknown"),
            channel=channel_json(ch),
        )

    def entered_bridge(self, br: FakeBridge, ch: FakeChannel) -> dict[str, Any]:
        return self._event("ChannelEnteredBridge", bridge=bridge_json(br), channel=channel_json(ch))

    def left_bridge(self, br: FakeBridge, ch: FakeChannel) -> dict[str, Any]:
        return self._event("ChannelLeftBridge", bridge=bridge_json(br), channel=channel_json(ch))

    def bridge_destroyed(self, br: FakeBridge) -> dict[str, Any]:
        return self._event("BridgeDestroyed", bridge=bridge_json(br))

    def playback_started(self, pb: FakePlayback) -> dict[str, Any]:
        return self._event("PlaybackStarted", playback=playback_json(pb))

    def playback_finished(self, pb: FakePlayback) -> dict[str, Any]:
        return self._event("PlaybackFinished", playback=playback_json(pb))

    def channel_transfer(
        self, refer_to: dict[str, Any], referred_by: dict[str, Any], state: str | None = None
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {"refer_to": refer_to, "referred_by": referred_by}
        if state is not None:
            fields["state"] = state
        return self._event("ChannelTransfer", **fields)
