"""ARI resources and events, written from the Asterisk 22 Swagger spec (channels.json, bridges.json, events.json).

Every model ignores fields it does not name (``extra="ignore"``: a newer Asterisk never breaks parsing, and
nothing is built for a field nobody reads), and :data:`AriEvent` is every event as one union, keeping unknown
event types whole as :class:`UnknownEvent` instead of dropping them (:mod:`models.ari_messages` reads the
websocket's messages into it).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

__all__ = [
    "EVENT_ADAPTER",
    "EVENT_MODELS",
    "HANDLED_EVENT_TYPES",
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


# Each modelled event type by its name: the type read from a message's head picks its model at once.
EVENT_MODELS: dict[str, type[_Event]] = {
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
    return kind if kind in EVENT_MODELS else "Unknown"


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

EVENT_ADAPTER: TypeAdapter[AriEvent] = TypeAdapter(AriEvent)  # parses any message into the union

# Event types the ARI client asks Asterisk to send (eventFilter): every modelled type.
HANDLED_EVENT_TYPES: tuple[str, ...] = tuple(EVENT_MODELS)
