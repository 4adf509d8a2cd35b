"""From an RCML noun to an Asterisk dial string, refusing anything that could change the dial string."""

from __future__ import annotations

import re
from urllib.parse import unquote

from models.config import NumberConfig, Settings
from models.rcml import Client, DialNoun, Number, Sip

__all__ = ["UnsafeTarget", "check_refer_target", "dial_string", "noun_label", "our_number", "sip_headers"]

# Characters that mean something in an Asterisk dial string or a dialplan application argument
# ('&' rings several, '/' and '@' pick tech/context, ',' and '()' split arguments) are never allowed in a
# value that ends up in one, whoever wrote it: the RCML app, a phone's REFER, a webhook.
_SAFE_NUMBER = re.compile(r"[A-Za-z0-9+*#._-]{1,64}")
_SAFE_SIP = re.compile(r"sips?:[A-Za-z0-9+*#._~!$'=;?%-]{1,64}(@[A-Za-z0-9.\-\[\]:]{1,255})?")


# Headers a <Sip> URI may carry (sip:bob@host?X-Foo=bar): X- headers only, printable values, nothing that could
# end a header line and start another.
_HEADER_NAME = re.compile(r"X-[A-Za-z0-9-]{1,64}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,256}")
_MAX_HEADERS = 16


class UnsafeTarget(ValueError):
    """A target that could change an Asterisk dial string."""


def check_refer_target(target: str) -> str:
    """Return a REFER's target user part if it is safe to substitute into RCML, else raise UnsafeTarget."""
    if not _SAFE_NUMBER.fullmatch(target):
        raise UnsafeTarget(
            f"refer target {target[:80]!r} is not a plain number or name (at most 64 of A-Z a-z 0-9 + * # . _ -)"
        )
    return target


def our_number(settings: Settings, noun: DialNoun) -> NumberConfig | None:
    """The number a ``<Number>`` names when it is one of ours and runs in-process (``our_numbers``)."""
    if isinstance(noun, Number) and settings.routing.our_numbers == "in-process":
        return settings.number(noun.number)
    return None


def sip_headers(noun: DialNoun) -> dict[str, str]:
    """The ``X-`` headers a ``<Sip>`` URI asks for (``?X-Foo=bar&X-Baz=1``); UnsafeTarget for any other header or
    a value that is not plain printable text."""
    if not isinstance(noun, Sip):
        return {}
    _, separator, query = noun.uri.partition("?")
    if not separator:
        return {}
    headers: dict[str, str] = {}
    for pair in query.split("&")[: _MAX_HEADERS + 1]:
        name, _, raw = pair.partition("=")
        value = unquote(raw)
        if not _HEADER_NAME.fullmatch(name):
            raise UnsafeTarget(f"sip uri header {name[:80]!r}: only X- headers (X-Name=value) can be set")
        if not _HEADER_VALUE.fullmatch(value):
            raise UnsafeTarget(f"sip uri header {name}: its value is not plain printable text (at most 256)")
        headers[name] = value
    if len(headers) > _MAX_HEADERS:
        raise UnsafeTarget(f"sip uri asks for more than {_MAX_HEADERS} headers")
    return headers


def dial_string(settings: Settings, noun: DialNoun) -> str:
    """The dial string for a noun; one of our own numbers goes back into the Stasis context (its Voice app)."""
    routing = settings.routing
    match noun:
        case Number(number=number):
            _check(number, _SAFE_NUMBER, "number")
            template = routing.local if settings.number(number) is not None else routing.number
            return template.format(number=number)
        case Client(name=name):
            _check(name, _SAFE_NUMBER, "client")
            return routing.client.format(client=name)
        case Sip(uri=uri):
            uri = uri.partition("?")[0]  # headers go on the INVITE (sip_headers), not into the dial string
            _check(uri, _SAFE_SIP, "sip uri")
            sip_headers(noun)
            return routing.sip.format(uri=uri)


def noun_label(noun: DialNoun) -> str:
    """How the RCML app knows the party a noun dials: the client name, the number, or the SIP user."""
    match noun:
        case Number(number=number):
            return number
        case Client(name=name):
            return name
        case Sip(uri=uri):
            return uri.partition("?")[0].split(":", 1)[1].split("@", 1)[0]


def _check(value: str, pattern: re.Pattern[str], what: str) -> None:
    if not pattern.fullmatch(value):
        raise UnsafeTarget(f"{what} {value[:80]!r} cannot be dialed safely")
