"""The only package that speaks HTTP or WebSocket to Asterisk."""

from stasis_app.ari.protocol import AsteriskApi, EventHandler, HangupReason

__all__ = ["AsteriskApi", "EventHandler", "HangupReason"]
