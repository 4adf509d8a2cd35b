"""The project's exception tree. Every message is one line naming the file, number or URL at fault.

StasisRcmlError
├── ConfigError        the configuration file or a local app is invalid
├── MarkupError        an RCML document is invalid (names the URL and the line)
├── WebhookError       an application URL could not be fetched (timeout, HTTP error, missing app file)
└── AriError           Asterisk refused a REST call or cannot be reached
    └── CallGone       the channel or bridge is already gone (a 404): a normal path, not a failure
"""

from __future__ import annotations

from stasis_app.redact import redact_url

__all__ = ["AriError", "CallGone", "ConfigError", "MarkupError", "StasisRcmlError", "WebhookError"]


class StasisRcmlError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(StasisRcmlError):
    """The configuration (or a local RCML app it names) is invalid."""


class MarkupError(StasisRcmlError):
    """An RCML document is not valid RCML."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        self.source = source
        self.line = line
        self.reason = message
        where = f"{redact_url(source)}, line {line}" if line else redact_url(source)
        super().__init__(f"invalid RCML from {where}: {message}")


class WebhookError(StasisRcmlError):
    """An application URL did not give a document (timeout, connection refused, HTTP status, missing file)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        # The URL may carry user:password@ (sent as Basic auth): the message is logged, so it never does.
        super().__init__(f"request to {redact_url(url)} failed: {reason}")


class AriError(StasisRcmlError):
    """Asterisk answered a REST call with an error, or could not be reached."""

    def __init__(self, method: str, path: str, status: int | None, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.reason = message
        code = f" {status}" if status is not None else ""
        super().__init__(f"ARI {method} {path} ->{code} {message}")


class CallGone(AriError):
    """The channel or bridge a REST call named no longer exists (Asterisk answered 404)."""
