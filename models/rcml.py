"""RCML (Restcomm Markup Language) verbs and nouns, Restcomm/Twilio spelling in aliases.

These are plain data: :mod:`stasis_app.rcml` parses a document into them and the verb executors in
:mod:`stasis_app.verbs` run them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Client",
    "Dial",
    "DialNoun",
    "Document",
    "Hangup",
    "HttpMethod",
    "Number",
    "Pause",
    "Play",
    "Redirect",
    "Reject",
    "Say",
    "Sip",
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


Verb = Dial | Hangup | Pause | Redirect | Reject | Play | Say


class Document(_Rcml):
    """A parsed ``<Response>``: its verbs in order, and where it came from (for error messages)."""

    verbs: tuple[Verb, ...]
    source: str = ""
