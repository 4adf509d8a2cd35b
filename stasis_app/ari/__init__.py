"""The only package that speaks HTTP or WebSocket to Asterisk."""

from stasis_app.ari.client import AriClient
from stasis_app.ari.events import Backoff, EventLog, EventSink, EventStream, StreamState
from stasis_app.ari.protocol import AsteriskApi, EventHandler, HangupReason

__all__ = [
    "AriClient",
    "AsteriskApi",
    "Backoff",
    "EventHandler",
    "EventLog",
    "EventSink",
    "EventStream",
    "HangupReason",
    "StreamState",
]
