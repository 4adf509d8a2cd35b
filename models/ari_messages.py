"""Reading the ARI events websocket's messages: the type from the text, what the engine never acts on (dropped
unparsed), and the parse into the typed events of :mod:`models.ari`."""

from __future__ import annotations

from typing import Any

from models.ari import EVENT_ADAPTER, EVENT_MODELS, AriEvent

__all__ = ["UNUSED_EVENT_TYPES", "event_type", "ignored_event", "parse_event"]

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
        return EVENT_ADAPTER.validate_python(raw)
    # The type read from the head picks the model at once: no union to walk, no Python discriminator call.
    # A message whose body says another type fails that model's Literal and takes the union below.
    known = EVENT_MODELS.get(kind or event_type(raw) or "")
    if known is not None:
        try:
            return known.model_validate_json(raw)  # type: ignore[return-value]
        except ValueError:
            pass  # bad JSON, a missing field, or a second "type" key: the union says which, or parses it
    return EVENT_ADAPTER.validate_json(raw)
