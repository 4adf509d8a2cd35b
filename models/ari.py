"""ARI resources and events, written from the Asterisk 22 Swagger spec (channels.json, bridges.json, events.json).

Every model ignores fields it does not name (``extra="ignore"``: a newer Asterisk never breaks parsing, and
nothing is built for a field nobody reads), and :func:`parse_event` turns any websocket message into a typed
event, keeping unknown event types whole as :class:`UnknownEvent` instead of dropping them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

__all__ = [
    "HANDLED_EVENT_TYPES",
    "UNUSED_EVENT_TYPES",
    "AdditionalParam",
    "AriEvent",
    "Bridge",
    "BridgeDestroyed",
    "CallerID",
    "Channel",
    "ChannelDestroyed",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelHangupRequest",
    "ChannelLeftBridge",
    "ChannelState",
    "ChannelStateChange",
    "ChannelTransfer",
    "Dial",
    "DialplanCEP",
    "LiveRecording",
    "Playback",
    "PlaybackFinished",
    "PlaybackStarted",
    "RecordingFailed",
    "RecordingFinished",
    "RecordingStarted",
    "ReferTo",
    "ReferredBy",
    "RequiredDestination",
    "StasisEnd",
    "StasisStart",
    "StoredRecording",
    "TransferState",
    "UnknownEvent",
    "event_type",
    "ignored_event",
    "parse_event",
]


class _AriModel(BaseModel):
    # "ignore", not "allow": a kept extra field is one more Python object per field per event (the channel
    # snapshots carry several), and no code reads them. About a third of the cost of decoding an event.
    model_config = ConfigDict(extra="ignore", frozen=True)


class ChannelState(StrEnum):
    """``Channel.state`` values Asterisk reports (ast_state2str)."""

    DOWN = "Down"
    RSRVD = "Rsrvd"
    OFFHOOK = "OffHook"
    DIALING = "Dialing"
    RING = "Ring"
    RINGING = "Ringing"
    UP = "Up"
    BUSY = "Busy"
    DIALING_OFFHOOK = "Dialing Offhook"
    PRE_RING = "Pre-ring"
    UNKNOWN = "Unknown"


class TransferState(StrEnum):
    """The ``states`` of ``POST /channels/{id}/transfer_progress`` and the ``state`` of its echo event.

    Asterisk turns them into the sipfrag of the NOTIFY the transferor's phone receives.
    """

    PROGRESS = "channel_progress"  # SIP/2.0 100 Trying
    ANSWERED = "channel_answered"  # SIP/2.0 200 OK
    UNAVAILABLE = "channel_unavailable"  # SIP/2.0 503 Service Unavailable
    DECLINED = "channel_declined"  # SIP/2.0 603 Declined

    @property
    def sipfrag(self) -> int:
        """The SIP status code Asterisk puts in the NOTIFY body for this state."""
        return _SIPFRAG[self]


_SIPFRAG = {
    TransferState.PROGRESS: 100,
    TransferState.ANSWERED: 200,
    TransferState.UNAVAILABLE: 503,
    TransferState.DECLINED: 603,
}


class CallerID(_AriModel):
    name: str = ""
    number: str = ""


class DialplanCEP(_AriModel):
    context: str = ""
    exten: str = ""
    priority: int = 0
    app_name: str = ""
    app_data: str = ""


class Channel(_AriModel):
    """An ARI channel snapshot."""

    id: str
    name: str = ""
    state: str = ChannelState.UNKNOWN
    protocol_id: str = ""
    caller: CallerID = CallerID()
    connected: CallerID = CallerID()
    accountcode: str = ""
    dialplan: DialplanCEP = DialplanCEP()
    creationtime: str = ""
    language: str = "en"
    channelvars: dict[str, Any] | None = None
    caller_rdnis: str | None = None
    tenantid: str | None = None


class Bridge(_AriModel):
    """An ARI bridge snapshot."""

    id: str
    technology: str = ""
    bridge_type: str = ""
    bridge_class: str = ""
    creator: str = ""
    name: str = ""
    channels: list[str] = Field(default_factory=list)
    creationtime: str = ""
    video_mode: str | None = None
    video_source_id: str | None = None


class Playback(_AriModel):
    id: str
    media_uri: str = ""
    target_uri: str = ""
    language: str | None = None
    state: str = ""


class AdditionalParam(_AriModel):
    parameter_name: str
    parameter_value: str


class RequiredDestination(_AriModel):
    """What a REFER asks for: a ``destination`` (blind) or a ``protocol_id`` (attended, Replaces)."""

    protocol_id: str | None = None
    destination: str | None = None
    additional_protocol_params: list[AdditionalParam] | None = None


class ReferTo(_AriModel):
    requested_destination: RequiredDestination
    destination_channel: Channel | None = None
    connected_channel: Channel | None = None
    bridge: Bridge | None = None


class ReferredBy(_AriModel):
    source_channel: Channel
    connected_channel: Channel | None = None
    bridge: Bridge | None = None


class _Event(_AriModel):
    type: str
    application: str = ""
    timestamp: str = ""
    asterisk_id: str | None = None


class StasisStart(_Event):
    type: Literal["StasisStart"] = "StasisStart"
    args: list[str] = Field(default_factory=list)
    channel: Channel
    replace_channel: Channel | None = None


class StasisEnd(_Event):
    type: Literal["StasisEnd"] = "StasisEnd"
    channel: Channel


class ChannelStateChange(_Event):
    type: Literal["ChannelStateChange"] = "ChannelStateChange"
    channel: Channel


class ChannelDestroyed(_Event):
    type: Literal["ChannelDestroyed"] = "ChannelDestroyed"
    cause: int = 0
    cause_txt: str = ""
    tech_cause: int | None = None
    channel: Channel


class ChannelHangupRequest(_Event):
    type: Literal["ChannelHangupRequest"] = "ChannelHangupRequest"
    cause: int | None = None
    tech_cause: int | None = None
    soft: bool | None = None
    channel: Channel


class ChannelEnteredBridge(_Event):
    type: Literal["ChannelEnteredBridge"] = "ChannelEnteredBridge"
    bridge: Bridge
    channel: Channel | None = None


class ChannelLeftBridge(_Event):
    type: Literal["ChannelLeftBridge"] = "ChannelLeftBridge"
    bridge: Bridge
    channel: Channel


class BridgeDestroyed(_Event):
    type: Literal["BridgeDestroyed"] = "BridgeDestroyed"
    bridge: Bridge


class Dial(_Event):
    """Progress of a dial; ``dialstatus`` is ``""`` at first, then RINGING, ANSWER, BUSY, NOANSWER, ..."""

    type: Literal["Dial"] = "Dial"
    caller: Channel | None = None
    peer: Channel
    forward: str | None = None
    forwarded: Channel | None = None
    dialstring: str | None = None
    dialstatus: str = ""


class ChannelTransfer(_Event):
    """A REFER received on a channel whose endpoint has ``PJSIP_TRANSFER_HANDLING()=ari-only``.

    The first event for a REFER has no ``state``; each ``transfer_progress`` the app posts comes back as another
    ``ChannelTransfer`` carrying that ``state`` (an echo, not a new request).
    """

    type: Literal["ChannelTransfer"] = "ChannelTransfer"
    state: str | None = None
    refer_to: ReferTo
    referred_by: ReferredBy


class ChannelDtmfReceived(_Event):
    type: Literal["ChannelDtmfReceived"] = "ChannelDtmfReceived"
    digit: str
    duration_ms: int = 0
    channel: Channel


class PlaybackStarted(_Event):
    type: Literal["PlaybackStarted"] = "PlaybackStarted"
    playback: Playback


class PlaybackFinished(_Event):
    type: Literal["PlaybackFinished"] = "PlaybackFinished"
    playback: Playback


class LiveRecording(_AriModel):
    """A recording in progress (or just ended): ``state`` is queued, recording, paused, done, failed or canceled;
    the durations are whole seconds, on a recording that ended."""

    name: str
    format: str = ""
    target_uri: str = ""
    state: str = ""
    duration: int | None = None
    talking_duration: int | None = None
    silence_duration: int | None = None
    cause: str | None = None


class StoredRecording(_AriModel):
    """A finished recording Asterisk keeps (``GET /recordings/stored/{name}``)."""

    name: str
    format: str = ""


class RecordingStarted(_Event):
    type: Literal["RecordingStarted"] = "RecordingStarted"
    recording: LiveRecording


class RecordingFinished(_Event):
    type: Literal["RecordingFinished"] = "RecordingFinished"
    recording: LiveRecording


class RecordingFailed(_Event):
    type: Literal["RecordingFailed"] = "RecordingFailed"
    recording: LiveRecording


class UnknownEvent(_Event):
    """Any event type this app does not model; kept whole (extra fields stay on the object)."""

    model_config = ConfigDict(extra="allow", frozen=True)


_KNOWN: dict[str, type[_Event]] = {
    cls.__name__: cls
    for cls in (
        StasisStart,
        StasisEnd,
        ChannelStateChange,
        ChannelDestroyed,
        ChannelHangupRequest,
        ChannelEnteredBridge,
        ChannelLeftBridge,
        BridgeDestroyed,
        Dial,
        ChannelTransfer,
        ChannelDtmfReceived,
        PlaybackStarted,
        PlaybackFinished,
        RecordingStarted,
        RecordingFinished,
        RecordingFailed,
    )
}


def _event_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _KNOWN else "Unknown"


AriEvent = Annotated[
    Annotated[StasisStart, Tag("StasisStart")]
    | Annotated[StasisEnd, Tag("StasisEnd")]
    | Annotated[ChannelStateChange, Tag("ChannelStateChange")]
    | Annotated[ChannelDestroyed, Tag("ChannelDestroyed")]
    | Annotated[ChannelHangupRequest, Tag("ChannelHangupRequest")]
    | Annotated[ChannelEnteredBridge, Tag("ChannelEnteredBridge")]
    | Annotated[ChannelLeftBridge, Tag("ChannelLeftBridge")]
    | Annotated[BridgeDestroyed, Tag("BridgeDestroyed")]
    | Annotated[Dial, Tag("Dial")]
    | Annotated[ChannelTransfer, Tag("ChannelTransfer")]
    | Annotated[ChannelDtmfReceived, Tag("ChannelDtmfReceived")]
    | Annotated[PlaybackStarted, Tag("PlaybackStarted")]
    | Annotated[PlaybackFinished, Tag("PlaybackFinished")]
    | Annotated[RecordingStarted, Tag("RecordingStarted")]
    | Annotated[RecordingFinished, Tag("RecordingFinished")]
    | Annotated[RecordingFailed, Tag("RecordingFailed")]
    | Annotated[UnknownEvent, Tag("Unknown")],
    Discriminator(_event_tag),
]
"""Every ARI event as one union, discriminated on ``type``; unknown types become :class:`UnknownEvent`."""

_EVENT_ADAPTER: TypeAdapter[AriEvent] = TypeAdapter(AriEvent)

# Event types the ARI client asks Asterisk to send (eventFilter): every modelled type.
HANDLED_EVENT_TYPES: tuple[str, ...] = tuple(_KNOWN)

# Asked for (the contract tests hold the fake to Asterisk's Dial events) but acted on by nobody: the engine
# learns a dial's outcome from StasisStart and the hangup cause, and a playback's end from PlaybackFinished.
# The websocket reader drops them unparsed: 9 of the 52 events of a seed transfer.
UNUSED_EVENT_TYPES: frozenset[str] = frozenset({"Dial", "PlaybackStarted"})

# Two types the engine acts on in one form only, which the message's text shows without a parse (Asterisk's
# compact JSON, as event_type reads it): a ChannelStateChange when a dialed channel starts ringing (its Up is the
# StasisStart that follows, an answer's Up the answer request's own reply), a ChannelTransfer when it is a new
# REFER, not the echo of the app's own transfer_progress (``"state":"channel_progress"``...; a channel's state
# is never ``channel_...``). 5 of the 25 events of a seed transfer; a JSON string cannot hide these (its quotes
# are escaped).
_ACTED_ON_IF: dict[str, str] = {"ChannelStateChange": '"state":"Ringing"'}
_IGNORED_IF: dict[str, str] = {"ChannelTransfer": '"state":"channel_'}


def ignored_event(kind: str | None, message: str | bytes) -> bool:
    """True when the engine does nothing with this message (its ``kind`` read by :func:`event_type`): not worth
    a parse. False whenever only a parse can tell."""
    if kind is None or type(message) is not str:
        return False
    if kind in UNUSED_EVENT_TYPES:
        return True
    if (needed := _ACTED_ON_IF.get(kind)) is not None:
        return needed not in message
    if (unwanted := _IGNORED_IF.get(kind)) is not None:
        return unwanted in message
    return False


# Asterisk writes "type" first: {"type":"StasisStart",... (pretty=no, ari.conf's default), except after a few
# plain fields of the event's own: {"cause":32,"soft":true,"type":"ChannelHangupRequest",...
_HEAD = '{"type":"'
_KEY = ',"type":"'
_HEAD_END = len(_HEAD) + 32  # the longest type name is well under 32 characters
_KEY_WITHIN = 64


def event_type(message: str | bytes) -> str | None:
    """The ``type`` of a websocket message read from its head without parsing it, or None when the message does
    not start the way Asterisk writes events (pretty-printed, bytes, not JSON): then only a parse can tell."""
    if type(message) is not str:
        return None
    if message.startswith(_HEAD):
        start = len(_HEAD)
    else:
        # The top-level "type" only: no object may open before it.
        at = message.find(_KEY, 1, _KEY_WITHIN)
        if at < 0 or not message.startswith("{") or message.find("{", 1, at) >= 0:
            return None
        start = at + len(_KEY)
    end = message.find('"', start, start + 32)
    return message[start:end] if end > 0 else None


def parse_event(raw: str | bytes | dict[str, Any], *, kind: str | None = None) -> AriEvent:
    """Parse one websocket message (JSON text or a decoded dict) into a typed event; ``kind`` is
    :func:`event_type` of ``raw`` when the caller has read it already.

    Raises ``pydantic.ValidationError`` when a known event lacks a required field.
    """
    if isinstance(raw, dict):
        return _EVENT_ADAPTER.validate_python(raw)
    # The type read from the head picks the model at once: no union to walk, no Python discriminator call.
    # A message whose body says another type fails that model's Literal and takes the union below.
    known = _KNOWN.get(kind or event_type(raw) or "")
    if known is not None:
        try:
            return known.model_validate_json(raw)  # type: ignore[return-value]
        except ValueError:
            pass  # bad JSON, a missing field, or a second "type" key: the union says which, or parses it
    return _EVENT_ADAPTER.validate_json(raw)
