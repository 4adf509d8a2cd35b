"""RCML (Restcomm Markup Language) verbs and nouns, Restcomm/Twilio spelling in aliases.

These are plain data: :mod:`stasis_app.rcml` parses a document into them and the verb executors in
:mod:`stasis_app.verbs` run them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Client",
    "Conference",
    "Dial",
    "DialConference",
    "DialNoun",
    "Document",
    "Gather",
    "Hangup",
    "HttpMethod",
    "Number",
    "Pause",
    "Play",
    "Record",
    "Redirect",
    "Reject",
    "Say",
    "Sip",
    "Sms",
    "StatusCallback",
    "Verb",
]

HttpMethod = Literal["GET", "POST"]


class _Rcml(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class StatusCallback(_Rcml):
    """A Dial noun's ``statusCallback``: where the dialed call's progress is told (Twilio's names)."""

    url: str
    method: HttpMethod = "POST"
    # Which of initiated, ringing, answered, completed are told (Twilio's default: completed).
    events: frozenset[str] = frozenset({"completed"})


class Number(_Rcml):
    """``<Number>1002</Number>``: a phone number; one of ours runs that number's Voice app."""

    kind: Literal["number"] = "number"
    number: str
    status_callback: StatusCallback | None = None
    # A whisper: RCML run on the callee's leg once it answers, before it is bridged (Twilio's noun url, method).
    url: str | None = None
    method: HttpMethod = "POST"
    # DTMF sent to the callee once it answers, before it is bridged (``w``: a half-second pause).
    send_digits: str | None = Field(default=None, alias="sendDigits", pattern=r"^[0-9*#A-DwW]{1,100}$")


class Client(_Rcml):
    """``<Client>bob</Client>``: a registered client (a PJSIP endpoint)."""

    kind: Literal["client"] = "client"
    name: str
    status_callback: StatusCallback | None = None
    # A whisper: RCML run on the callee's leg once it answers, before it is bridged (Twilio's noun url, method).
    url: str | None = None
    method: HttpMethod = "POST"


class Sip(_Rcml):
    """``<Sip>sip:alice@example.com</Sip>``: a SIP URI, dialed through the configured trunk."""

    kind: Literal["sip"] = "sip"
    uri: str
    status_callback: StatusCallback | None = None
    # A whisper: RCML run on the callee's leg once it answers, before it is bridged (Twilio's noun url, method).
    url: str | None = None
    method: HttpMethod = "POST"


DialNoun = Number | Client | Sip

# When a Dial records its bridge (Twilio's values; the parser maps Restcomm's record="true" to from-answer).
DialRecord = Literal["do-not-record", "record-from-answer", "record-from-ringing"]


class Dial(_Rcml):
    """``<Dial>``: ring every noun at once, bridge the first that answers with the caller."""

    verb: Literal["Dial"] = "Dial"
    nouns: tuple[DialNoun, ...]
    action: str | None = None
    method: HttpMethod = "POST"
    timeout: int = Field(default=30, ge=1, le=600)
    # 4 h by default; the parser clamps a larger value to 24 h (stasis_app.rcml.MAX_TIME_LIMIT).
    time_limit: int = Field(default=14400, alias="timeLimit", ge=1, le=86400)
    caller_id: str | None = Field(default=None, alias="callerId")
    # Twilio's: a REFER on this Dial's call requests this URL instead of the number's Refer URL.
    refer_url: str | None = Field(default=None, alias="referUrl")
    refer_method: HttpMethod = Field(default="POST", alias="referMethod")
    record: DialRecord = "do-not-record"
    hangup_on_star: bool = Field(default=False, alias="hangupOnStar")  # the caller's * ends the connected call
    # Played to the caller (answered first) instead of the ringing while the Dial rings: tone:, sound:, a URL.
    ringback_tone: str | None = Field(default=None, alias="ringbackTone")


class Hangup(_Rcml):
    verb: Literal["Hangup"] = "Hangup"


class Pause(_Rcml):
    verb: Literal["Pause"] = "Pause"
    length: int = Field(default=1, ge=0, le=3600)


class Redirect(_Rcml):
    verb: Literal["Redirect"] = "Redirect"
    url: str
    method: HttpMethod = "POST"


class Reject(_Rcml):
    """``<Reject reason="busy|rejected">``: refuse the call without answering it."""

    verb: Literal["Reject"] = "Reject"
    reason: Literal["rejected", "busy"] = "rejected"


class Play(_Rcml):
    """``<Play loop="1">sound:hello-world</Play>``: Asterisk media (``sound:``, ``tone:``, ``recording:``...), an
    ``http(s)://`` URL, or a URL relative to the document; ``digits`` sends DTMF first (``w``: half a second)."""

    verb: Literal["Play"] = "Play"
    media: str = ""  # empty only with digits
    loop: int = Field(default=1, ge=0, le=1000)
    digits: str | None = Field(default=None, pattern=r"^[0-9*#A-DwW]{1,100}$")


class Say(_Rcml):
    """``<Say voice="woman" language="en-US" loop="1">text</Say>``: text to speech, played to the caller."""

    verb: Literal["Say"] = "Say"
    text: str = Field(default="", max_length=4096)  # Twilio's limit
    voice: str = Field(default="man", max_length=64)
    language: str = Field(default="en", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8}){0,2}$")
    loop: int = Field(default=1, ge=0, le=1000)


class Gather(_Rcml):
    """``<Gather numDigits="4">``: collect the caller's key presses (DTMF), while its nested verbs (``<Play>``,
    ``<Pause>``, ``<Say>``) play; a key press interrupts them. With input, the digits go to ``action``."""

    verb: Literal["Gather"] = "Gather"
    verbs: tuple[Verb, ...] = ()  # nested; the parser allows only media verbs here
    action: str | None = None  # None: the current document's URL, as Twilio does
    method: HttpMethod = "POST"
    timeout: int = Field(default=5, ge=1, le=600)  # seconds of silence after the prompt and between digits
    finish_on_key: str = Field(default="#", alias="finishOnKey", pattern=r"^[0-9*#]?$")  # "": no key finishes
    num_digits: int | None = Field(default=None, alias="numDigits", ge=1, le=128)


class Record(_Rcml):
    """``<Record maxLength="60">``: record what the caller says into a stored recording, then request ``action``
    with ``RecordingUrl``, ``RecordingDuration`` and ``Digits``."""

    verb: Literal["Record"] = "Record"
    action: str | None = None  # None: the current document's URL, as Twilio does
    method: HttpMethod = "POST"
    timeout: int = Field(default=5, ge=0, le=3600)  # seconds of silence that end it; 0: silence never does
    max_length: int = Field(default=3600, alias="maxLength", ge=1, le=86400)
    finish_on_key: str = Field(default="1234567890*#", alias="finishOnKey", pattern=r"^[0-9*#]*$")
    play_beep: bool = Field(default=True, alias="playBeep")
    recording_status_callback: str | None = Field(default=None, alias="recordingStatusCallback")
    recording_status_callback_method: HttpMethod = Field(default="POST", alias="recordingStatusCallbackMethod")


ConferenceEvent = Literal["start", "end", "join", "leave"]


class Conference(_Rcml):
    """``<Conference>room</Conference>``: a named room every call that dials the same name joins (Twilio's and
    Restcomm's attributes; see :mod:`stasis_app.conference`)."""

    kind: Literal["conference"] = "conference"
    name: str = Field(min_length=1, max_length=128)
    muted: bool = False
    # Twilio's values: true (enter and exit), false, onEnter, onExit.
    beep: Literal["true", "false", "onEnter", "onExit"] = "true"
    start_conference_on_enter: bool = Field(default=True, alias="startConferenceOnEnter")
    end_conference_on_exit: bool = Field(default=False, alias="endConferenceOnExit")
    max_participants: int = Field(default=250, alias="maxParticipants", ge=2, le=250)
    # None: the default wait tone; "": silence; Asterisk media (sound:, tone:, recording:) or an RCML URL.
    wait_url: str | None = Field(default=None, alias="waitUrl")
    wait_method: HttpMethod = Field(default="POST", alias="waitMethod")
    status_callback: str | None = Field(default=None, alias="statusCallback")
    status_callback_method: HttpMethod = Field(default="POST", alias="statusCallbackMethod")
    status_callback_event: frozenset[ConferenceEvent] = Field(
        default=frozenset({"start", "end"}), alias="statusCallbackEvent"
    )


class DialConference(_Rcml):
    """``<Dial><Conference>room</Conference></Dial>``: a Dial whose one noun is a conference room; the Dial's
    ``action`` is requested when the participant leaves it."""

    verb: Literal["Dial"] = "Dial"
    conference: Conference
    action: str | None = None
    method: HttpMethod = "POST"
    time_limit: int = Field(default=14400, alias="timeLimit", ge=1, le=86400)


class Sms(_Rcml):
    """``<Sms to="bob" from="1001" action="...">text</Sms>``: Restcomm's voice-app SMS, sent as a SIP MESSAGE.
    ``to`` defaults to the caller, ``from`` to the number called (as Twilio does)."""

    verb: Literal["Sms"] = "Sms"
    body: str = Field(min_length=1, max_length=1600)
    to: str | None = None
    from_: str | None = Field(default=None, alias="from")
    action: str | None = None
    method: HttpMethod = "POST"
    status_callback: str | None = Field(default=None, alias="statusCallback")


Verb = Dial | Hangup | Pause | Redirect | Reject | Play | Say | Gather | Record | DialConference | Sms

Gather.model_rebuild()


class Document(_Rcml):
    """A parsed ``<Response>``: its verbs in order, and where it came from (for error messages)."""

    verbs: tuple[Verb, ...]
    source: str = ""
    # What was accepted as Restcomm accepts it but deserves a look (an unknown verb skipped), one line each.
    warnings: tuple[str, ...] = ()
