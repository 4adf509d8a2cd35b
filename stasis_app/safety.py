"""Start-up checks for a deployment that reaches beyond this machine: refuse the unsafe, warn about the risky.

* Refused: the sample ARI password (``asterisk``, as shipped in ``asterisk/ari.conf``) against an ARI
  URL that is not on the loopback. Anyone who can reach that Asterisk could run its calls.
* Warned: plain ``http://`` to a host that is not on the loopback (the ARI URL, which carries the
  password as Basic auth, and every application URL, which carries callers' numbers), and
  application URLs requested unsigned (no ``[webhooks] auth_token``).

Loopback means ``localhost`` (and ``*.localhost``), 127.0.0.0/8 and ``::1``: names are not resolved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from urllib.parse import urlsplit

from models.config import Settings
from stasis_app.errors import ConfigError
from stasis_app.redact import redact_url

__all__ = ["SAMPLE_ARI_PASSWORD", "is_loopback_url", "refuse_unsafe", "startup_warnings"]

SAMPLE_ARI_PASSWORD = "asterisk"


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine's loopback (a name other than localhost is not resolved)."""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_unsafe(settings: Settings) -> None:
    """Raise :class:`ConfigError` (one line) for a deployment that must not start."""
    ari = settings.ari
    if ari.password == SAMPLE_ARI_PASSWORD and not is_loopback_url(ari.url):
        raise ConfigError(
            f"ari.password is the sample password {SAMPLE_ARI_PASSWORD!r} and ari.url {redact_url(ari.url)} is not "
            "on the loopback: set a strong password in Asterisk's ari.conf and in [ari] password (or ARI_PASSWORD)"
        )


def startup_warnings(settings: Settings) -> list[str]:
    """One line for each risky but allowed setting; empty when nothing leaves the machine unprotected."""
    warnings: list[str] = []
    if _plain_http_off_the_machine(settings.ari.url):
        warnings.append(
            f"ari.url {redact_url(settings.ari.url)}: plain http:// to another host sends the ARI "
            "password in clear; use https://"
        )
    for where, url in _application_urls(settings):
        if _plain_http_off_the_machine(url):
            warnings.append(f"{where} {redact_url(url)}: plain http:// to another host; use https://")
    if settings.webhooks.auth_token is None and any(
        url.startswith(("http://", "https://")) for _, url in _application_urls(settings)
    ):
        warnings.append(
            "requests to application URLs are not signed: set [webhooks] auth_token "
            "(or WEBHOOK_AUTH_TOKEN) so your app can check X-Twilio-Signature"
        )
    return warnings


def _plain_http_off_the_machine(url: str) -> bool:
    return url.startswith("http://") and not is_loopback_url(url)


def _application_urls(settings: Settings) -> Iterator[tuple[str, str]]:
    for index, number in enumerate(settings.numbers):
        for key in ("voice_url", "refer_url", "voice_fallback_url"):
            url = getattr(number, key)
            if url is not None:
                yield f"numbers[{index}].{key}", url
