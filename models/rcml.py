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
    "Hangup",
    "HttpMethod",
    "Number",
    "Pause",
    "Play",
    "Redirect",
    "Reject",
    "Sip",
    "Sms",
    "Verb",
]

HttpMethod = Literal["GET", "POST"]


class _Rcml(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")


class Number(_Rcml):
    """``<Number>1002</Number>``: a phone number; one of ours runs that number's Voice app."""

    kind: Literal["number"] = "number"
    number: str


class Client(_Rcml):
    """``<Client>bob</Client>``: a registered client (a PJSIP endpoint)."""

    kind: Literal["client"] = "client"
    name: str


class Sip(_Rcml):
    """``<Sip>sip:alice@example.com</Sip>``: a SIP URI, dialed through the configured trunk."""

    kind: Literal["sip"] = "sip"
    uri: str


DialNoun = Number | Client | Sip


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
    """``<Play loop="1">sound:hello-world</Play>``: Asterisk media (``sound:``, ``tone:``, ``recording:``...)."""

    verb: Literal["Play"] = "Play"
    media: str
    loop: int = Field(default=1, ge=0, le=1000)


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


Verb = Dial | Hangup | Pause | Redirect | Reject | Play | DialConference | Sms


class Document(_Rcml):
    """A parsed ``<Response>``: its verbs in order, and where it came from (for error messages)."""

    verbs: tuple[Verb, ...]
    source: str = ""
