"""The configuration file's shape (TOML), validated by pydantic; loaded by :mod:`stasis_app.config`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from models.rcml import HttpMethod

__all__ = [
    "AriSettings",
    "NumberConfig",
    "RoutingSettings",
    "Settings",
    "TtsSettings",
    "WebhookSettings",
    "is_safe_app_name",
]

_APP_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def is_safe_app_name(name: str) -> bool:
    """Whether ``app:NAME`` names a file inside the apps folder (no slash, no ``..``)."""
    return _APP_NAME.fullmatch(name) is not None and ".." not in name


def _template(value: str, key: str) -> str:
    """A dial-string template must use ``{key}`` and no other placeholder."""
    if "{" + key + "}" not in value:
        raise ValueError(f"must contain {{{key}}}")
    try:
        value.format(**{key: "x"})
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"only {{{key}}} may be used ({exc})") from None
    return value


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AriSettings(_Config):
    """``[ari]``: where Asterisk's REST interface is and how to log in.

    Credentials written into the URL (``http://user:password@host:8088``, common in ``ARI_URL``) are
    taken out of it and used as ``username`` / ``password``: the URL is logged, the password never.
    """

    url: str = "http://127.0.0.1:8088"
    username: str = "asterisk"
    password: str = "asterisk"
    app: str = "rcml"
    # How REST requests reach Asterisk: "websocket" sends them over the events websocket (Asterisk 20.14, 21.9,
    # 22.4 and later), "http" over a bounded keep-alive pool, "auto" asks the websocket on each connect.
    rest: Literal["auto", "websocket", "http"] = "auto"
    # At most this many HTTP connections at once (queued beyond it); http.conf's sessionlimit defaults to 100.
    http_connections: int = Field(default=20, ge=1, le=500)
    # Seconds one REST request may take, queueing for a connection included.
    request_timeout: float = Field(default=10.0, gt=0, le=120)
    # Seconds between two reconciles (channels in our app and rcml-* bridges no call owns are cleaned); 0: only
    # at connect and after each reconnect.
    reconcile_interval: float = Field(default=60.0, ge=0, le=86400)

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        try:
            parts = urlsplit(data["url"])
            host = parts.netloc.rpartition("@")[2]
            username, password = parts.username, parts.password
        except ValueError:
            return data  # the url validator says what is wrong with it
        if username is None:
            return data
        credentials = {"username": unquote(username)}
        if password is not None:
            credentials["password"] = unquote(password)
        return {**data, **credentials, "url": parts._replace(netloc=host).geturl()}

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class RoutingSettings(_Config):
    apps_dir: Path = Path("apps")
    client: str = "PJSIP/{client}"
    number: str = "PJSIP/{number}@trunk"
    sip: str = "PJSIP/trunk/{uri}"
    # How a <Number> that is one of ours reaches that number's Voice app: "in-process" runs it as a call of its
    # own inside this app, its callee joining the caller's bridge directly; "local-channel" dials it back into
    # the Stasis context through a Local channel (a second channel pair and bridge in Asterisk for the call).
    our_numbers: Literal["in-process", "local-channel"] = "in-process"
    local: str = "Local/{number}@rcml/n"
    # Clients that may call each other by name, peer to peer: no RCML runs, and a REFER on such a call is
    # declined (603) while the call goes on. Such calls still run through this app so that a REFER gets an
    # answer at all: with ari-only, Asterisk leaves a REFER on a channel outside Stasis pending until hangup.
    clients: tuple[str, ...] = ()

    @field_validator("clients")
    @classmethod
    def _client_names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", name):
                raise ValueError(f"{name!r} is not a plain client name (A-Z a-z 0-9 . _ -)")
        return value

    @field_validator("client", "number", "sip", "local")
    @classmethod
    def _dial_string(cls, value: str, info: ValidationInfo) -> str:
        return _template(value, {"client": "client", "sip": "uri"}.get(info.field_name or "", "number"))


class WebhookSettings(_Config):
    """``[webhooks]``: how application URLs are requested."""

    # One deadline for the whole request: connect, redirects, headers and body.
    timeout: float = Field(default=5.0, gt=0, le=60)
    account_sid: str = "ACae6e420f425248d6a26948c17a9e2acf"
    # The largest response accepted, before and after gzip/deflate decoding (and the largest local app file).
    max_response_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Signs every request (X-Twilio-Signature); WEBHOOK_AUTH_TOKEN in the environment overrides it.
    auth_token: str | None = Field(default=None, min_length=1)


class HttpSettings(_Config):
    """``[http]``: the app's own HTTP side, which serves generated speech, local media and recordings to Asterisk
    and to the customer's app (``RecordingUrl``)."""

    bind: str = "127.0.0.1"
    port: int = Field(default=8090, ge=0, le=65535)  # 0: any free port (tests)
    # How Asterisk and the customer's app reach it; default http://{bind}:{port}.
    public_url: str | None = None

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.bind}:{self.port}").rstrip("/")


class TtsSettings(_Config):
    """``[tts]``: how ``<Say>`` text becomes audio, and where the rendered files are kept."""

    engine: Literal["espeak-ng"] = "espeak-ng"
    # Rendered speech, one WAV file per (engine, voice, language, text); relative to the config file.
    cache_dir: Path = Path("tts-cache")
    # Seconds one rendering may take before the Say is skipped (one log line, the call goes on).
    timeout: float = Field(default=20.0, gt=0, le=300)


class LimitSettings(_Config):
    """``[limits]``: when a new call is refused (503) at StasisStart, before any webhook, to protect calls up."""

    # Calls (sessions) running at once; new ones beyond it are refused.
    max_calls: int = Field(default=1000, ge=1, le=100_000)
    # Event-loop lag in milliseconds (how late a 50 ms timer fires) above which new calls are refused; 0: off.
    max_loop_lag_ms: float = Field(default=250.0, ge=0, le=60_000)
    # How old a new call's StasisStart may be when the app gets to it (Asterisk's timestamp): older means the app
    # is behind Asterisk (its events queue up there), so new calls are refused until it catches up; 0: off.
    max_event_age_ms: float = Field(default=1000.0, ge=0, le=600_000)
    # How long Asterisk may take to answer the app's REST requests (the median of the last 64): slower means Asterisk
    # itself is saturated (a transfer waits for several answers one after another: at 150 ms each it takes about a
    # second), and new calls are refused until it catches up; 0: off.
    max_answer_ms: float = Field(default=150.0, ge=0, le=600_000)


class NumberConfig(_Config):
    number: str = Field(min_length=1)
    voice_url: str
    voice_method: HttpMethod = "POST"
    refer_url: str | None = None
    refer_method: HttpMethod = "POST"
    # Requested when the Voice URL fails (no document, or invalid RCML), with ErrorCode and ErrorUrl added.
    voice_fallback_url: str | None = None
    voice_fallback_method: HttpMethod = "POST"
    # Restcomm's StatusCallback: requested (fire-and-forget) when a call to this number has ended.
    status_callback: str | None = None
    status_callback_method: HttpMethod = "POST"

    @field_validator("number", mode="before")
    @classmethod
    def _number_text(cls, value: object) -> object:
        # TOML users write `number = 1001`; a number is an identifier, not arithmetic.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("voice_method", "refer_method", "voice_fallback_method", "status_callback_method", mode="before")
    @classmethod
    def _method_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("voice_url", "refer_url", "voice_fallback_url")
    @classmethod
    def _app_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "app:")):
            raise ValueError("must be http://, https:// or app:NAME")
        if value is not None and value.startswith("app:") and not is_safe_app_name(value[4:]):
            raise ValueError("app:NAME must be a plain file name ([A-Za-z0-9_.-], no slash, no ..)")
        return value


class Settings(_Config):
    ari: AriSettings = AriSettings()
    routing: RoutingSettings = RoutingSettings()
    webhooks: WebhookSettings = WebhookSettings()
    limits: LimitSettings = LimitSettings()
    http: HttpSettings = HttpSettings()
    tts: TtsSettings = TtsSettings()
    numbers: tuple[NumberConfig, ...] = ()
    # Folder of the config file: apps_dir is relative to it.
    base_dir: Path = Path(".")

    def number(self, number: str) -> NumberConfig | None:
        """The configured number, or None. As Restcomm matches them: exactly, else ignoring a leading ``+``
        on either side (``1112`` reaches ``+1112``). The ``*`` catch-all is not a number we own: see
        :meth:`incoming_number`."""
        bare = number.removeprefix("+")
        found = None
        for entry in self.numbers:
            if entry.number == number:
                return entry
            if found is None and entry.number != "*" and entry.number.removeprefix("+") == bare:
                found = entry
        return found

    def incoming_number(self, number: str) -> NumberConfig | None:
        """The number a call to ``number`` runs: :meth:`number`, else the ``*`` catch-all if configured."""
        return self.number(number) or next((entry for entry in self.numbers if entry.number == "*"), None)

    @property
    def apps_path(self) -> Path:
        """The folder of local ``app:NAME`` files (``routing.apps_dir``, relative to the config file)."""
        return self.routing.apps_dir if self.routing.apps_dir.is_absolute() else self.base_dir / self.routing.apps_dir

    @property
    def tts_path(self) -> Path:
        """The folder of rendered speech (``tts.cache_dir``, relative to the config file)."""
        return self.tts.cache_dir if self.tts.cache_dir.is_absolute() else self.base_dir / self.tts.cache_dir
