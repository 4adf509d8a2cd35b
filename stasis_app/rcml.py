"""Parse an RCML document (``<Response>`` and its verbs) into :mod:`models.rcml`.

The parser follows Restcomm/Twilio spelling and semantics:

* Verbs: ``Dial`` (nouns ``Number``, ``Client``, ``Sip``; plain text is a Number, as in
  ``<Dial>1002</Dial>``, ``Uri`` as a Sip URI; or a ``Conference``, alone), ``Hangup``, ``Pause``,
  ``Redirect``, ``Reject``, ``Play``, ``Say``, ``Sms``, ``Record``, and ``Gather`` with the media verbs nested
  in it (:data:`GATHER_NESTED`; speech input is refused).
* An unknown verb is skipped with one WARNING naming it and its line, as Restcomm does; an unknown noun is an
  error. Unknown *attributes* are ignored, as Twilio does, so documents written for Twilio
  keep working. A known attribute with a bad value (``timeout="abc"``, ``method="PUT"``) is an error.
* ``Play`` text without a URI scheme (``hello-world``, ``digits/1``) is an Asterisk sound name and becomes
  ``sound:hello-world``, unless it reads as a relative URL (it starts with ``/``, ``./`` or ``../``, or ends
  in an audio file extension such as ``.wav``): that is kept as written and resolved against the document's
  URL when played. Anything with a scheme (``sound:``, ``tone:``, ``recording:``, ``http(s)://``) is kept.
* Relative URLs (``Dial action``, ``Redirect``) are kept as written: :mod:`stasis_app.webhook`
  resolves them against the URL of the document that contained them.
* No DTD is ever loaded and no entity is expanded (XXE, "billion laughs"): a document with a
  ``DOCTYPE`` is refused outright, since RCML never needs one.
* Sizes are bounded so that no document can stall the event loop or overflow a timer: at most
  :data:`MAX_VERBS` verbs and :data:`MAX_NOUNS` nouns per ``<Dial>``; a ``<Dial>`` ``timeout`` above
  600 s or ``timeLimit`` above :data:`MAX_TIME_LIMIT` is clamped with a WARNING (Restcomm's own tests
  use ``timeout="1000000"``); ``<Pause length>`` and ``<Play loop>`` out of range are errors.
* ``$core_X`` placeholders (local ``app:`` files, as Restcomm's visual designer writes them) are
  replaced after parsing, in attribute values and text only: a value can never change the
  document's structure, and comments are left alone.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, cast

from lxml import etree

from models.rcml import (
    Client,
    Conference,
    Dial,
    DialConference,
    DialNoun,
    Document,
    Gather,
    Hangup,
    HttpMethod,
    Number,
    Pause,
    Play,
    Record,
    Redirect,
    Reject,
    Say,
    Sip,
    Sms,
    StatusCallback,
    Verb,
)
from stasis_app.errors import MarkupError
from stasis_app.rcml_source import (
    MAX_TIME_LIMIT,
    Source,
    build,
    doctype_line,
    elements,
    fill_placeholders,
    first_line,
    line_of,
    no_stray_text,
    read_attributes,
    shown,
    syntax_message,
    tag_name,
    text_of,
)
from stasis_app.redact import redact_url

__all__ = ["GATHER_NESTED", "MAX_NOUNS", "MAX_TIME_LIMIT", "MAX_VERBS", "fill_placeholders", "parse_rcml"]

log = logging.getLogger(__name__)

# A real app has a handful of verbs; a million of them only costs memory and blocks every call while parsed.
MAX_VERBS = 1000
MAX_NOUNS = 100
# What a <Gather> may play while it listens, as in Twilio; each parses with its own top-level parser, so a
# media verb added to _VERBS (Say) nests without touching <Gather>.
GATHER_NESTED = frozenset({"Say", "Play", "Pause"})

# One parser for the process: building one per document costs more than parsing a small document.
# lxml parsers are not thread-safe, but everything here runs on the one asyncio thread.
_PARSER = etree.XMLParser(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
)

# lxml refuses a str that carries an encoding declaration; the text is already decoded, so drop it.
# "<?xml " only: "<?xml-stylesheet ...?>" is a processing instruction, which the parser drops.
_XML_DECLARATION = re.compile(r"\A\ufeff?\s*<\?xml\s[^>]*\?>")
_XML_DECLARATION_BYTES = re.compile(rb"\A(\xef\xbb\xbf)?\s*<\?xml\s[^>]*\?>")
# An "&" that starts no character or entity reference: written bare in a URL (a=1&b=2), as Restcomm accepts.
_BARE_AMPERSAND = re.compile(r"&(?!#[0-9]{1,7};|#x[0-9A-Fa-f]{1,6};|[A-Za-z][A-Za-z0-9]{0,31};)")
_BARE_AMPERSAND_BYTES = re.compile(_BARE_AMPERSAND.pattern.encode())
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# A Play text that is a relative URL rather than an Asterisk sound name (sound names have no extension).
_RELATIVE_MEDIA = re.compile(r"^\.{0,2}/|\.(wav|mp3|gsm|ulaw|alaw|ul|al|sln\d*|g722|g729|wav16)([?#].*)?$", re.I)


def parse_rcml(text: str | bytes, source: str, params: Mapping[str, str] | None = None) -> Document:
    """Parse an RCML document; ``source`` (a URL or file name) is named in every error.

    Bytes are decoded as the XML declaration says (UTF-8 by default); a str is used as is. With
    ``params``, every ``$core_X`` in an attribute value or a text is replaced by ``params["X"]`` (empty
    when missing). Raises :class:`MarkupError` with the line at fault, and never anything else.
    """
    src = Source(source, params, [])
    if isinstance(text, str):
        text = _XML_DECLARATION.sub("", text, count=1)
        text = _BARE_AMPERSAND.sub("&amp;", text)
    else:
        text = _BARE_AMPERSAND_BYTES.sub(b"&amp;", text)
    try:
        root = _parse_xml(text)
    except etree.XMLSyntaxError as exc:
        raise MarkupError(source, syntax_message(exc), exc.lineno or None) from None
    except ValueError as exc:  # lxml refuses some inputs before parsing (e.g. a declaration left in a str)
        raise MarkupError(source, f"not well-formed XML: {first_line(exc)}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise MarkupError(source, "DOCTYPE declarations are not allowed", doctype_line(text))
    if root.tag != "Response":
        # Restcomm runs a document whose root is a verb (no <Response> around it) as that one verb.
        wrapper = etree.Element("Response")
        wrapper.append(root)
        root = wrapper
    if len(root) > MAX_VERBS:
        raise MarkupError(source, f"too many verbs ({len(root)}; at most {MAX_VERBS})", line_of(root))
    no_stray_text(root, src)
    verbs = tuple(verb for element in elements(root, src) if (verb := _parse_verb(element, src)) is not None)
    return Document(verbs=verbs, source=source, warnings=tuple(src.warnings))


def _parse_xml(text: str | bytes) -> etree._Element:
    try:
        return etree.fromstring(text, _PARSER)
    except etree.XMLSyntaxError as exc:
        # Verbs with no <Response> around them (several top-level elements): Restcomm takes them as one.
        if "Extra content at the end of the document" not in str(exc.msg):
            raise
        if isinstance(text, str):
            wrapped: str | bytes = f"<Response>{text}</Response>"
        else:
            declaration = _XML_DECLARATION_BYTES.match(text)
            head, rest = (text[: declaration.end()], text[declaration.end() :]) if declaration else (b"", text)
            wrapped = b"%s<Response>%s</Response>" % (head, rest)
        try:
            return etree.fromstring(wrapped, _PARSER)
        except etree.XMLSyntaxError:
            raise exc from None


def _dial(element: etree._Element, src: Source) -> Dial | DialConference:
    if any(child.tag == "Conference" for child in element):
        return _dial_conference(element, src)
    if len(element) > MAX_NOUNS:
        raise src.error(f"<Dial> has too many nouns ({len(element)}; at most {MAX_NOUNS})", element)
    nouns: list[DialNoun] = []
    text = src.value(element.text).strip()
    if text:
        nouns.append(Number(number=text))
    for child in elements(element, src):
        parse_noun = _NOUNS.get(str(child.tag))
        if parse_noun is None:
            raise src.error(f"unsupported noun <{tag_name(child)}> in <Dial>", child)
        if text:
            raise src.error("<Dial> has both text and nouns", element)
        nouns.append(parse_noun(child, src))
    for child in element:
        if src.value(child.tail).strip():
            raise src.error("<Dial> has both text and nouns", child)
    if not nouns:
        raise src.error("<Dial> has nothing to dial", element)
    names = ("action", "method", "timeout", "timeLimit", "callerId", "referUrl", "referMethod", "record")
    attributes = read_attributes(element, src, (*names, "hangupOnStar", "ringbackTone"))
    if "record" in attributes:
        attributes["record"] = _dial_record(element, src, attributes["record"])
    return build(Dial, element, src, nouns=tuple(nouns), **attributes)


def _dial_record(element: etree._Element, src: Source, value: str) -> str:
    """Twilio's ``record`` values, and Restcomm's ``true`` / ``false``; a ``-dual`` one is recorded mono."""
    value = {"true": "record-from-answer", "false": "do-not-record"}.get(value.lower(), value)
    if value.endswith("-dual"):
        log.warning(
            '%s, line %s: <Dial> record="%s": recorded in one (mixed) channel',
            redact_url(src.name),
            line_of(element),
            shown(value),
        )
        value = value.removesuffix("-dual")
    return value


_CONFERENCE_ATTRIBUTES = (
    "muted",
    "beep",
    "startConferenceOnEnter",
    "endConferenceOnExit",
    "maxParticipants",
    "waitUrl",
    "waitMethod",
    "statusCallback",
    "statusCallbackMethod",
)
_CONFERENCE_EVENTS = ("start", "end", "join", "leave")  # Twilio's mute, hold, speaker...: not raised here


def _dial_conference(element: etree._Element, src: Source) -> DialConference:
    """``<Dial><Conference>`` (Restcomm and Twilio: the conference is the Dial's only noun)."""
    children = list(elements(element, src))
    if len(children) != 1 or src.value(element.text).strip() or src.value(children[0].tail).strip():
        raise src.error("<Conference> must be the only noun of its <Dial>", element)
    noun = children[0]
    name = text_of(noun, src)
    attributes: dict[str, Any] = read_attributes(noun, src, _CONFERENCE_ATTRIBUTES)
    for key in ("waitMethod", "statusCallbackMethod"):
        if key in attributes:
            attributes[key] = attributes[key].upper()
    if "beep" in attributes and attributes["beep"].lower() in ("true", "false"):
        attributes["beep"] = attributes["beep"].lower()
    if noun.get("waitUrl") is not None and "waitUrl" not in attributes:
        attributes["waitUrl"] = ""  # waitUrl="": silence, as Twilio
    if (events := noun.get("statusCallbackEvent")) is not None:
        words = src.value(events).replace(",", " ").split()
        attributes["statusCallbackEvent"] = frozenset(word for word in words if word in _CONFERENCE_EVENTS)
    conference = build(Conference, noun, src, name=name, **attributes)
    dial = read_attributes(element, src, ("action", "method", "timeLimit"))
    return build(DialConference, element, src, conference=conference, **dial)


def _sms(element: etree._Element, src: Source) -> Sms:
    body = text_of(element, src)
    attributes = read_attributes(element, src, ("to", "from", "action", "method", "statusCallback"))
    return build(Sms, element, src, body=body, **attributes)


def _hangup(element: etree._Element, src: Source) -> Hangup:
    text_of(element, src, required=False)
    return Hangup()


def _pause(element: etree._Element, src: Source) -> Pause:
    text_of(element, src, required=False)
    return build(Pause, element, src, **read_attributes(element, src, ("length",)))


def _redirect(element: etree._Element, src: Source) -> Redirect:
    url = text_of(element, src)
    return build(Redirect, element, src, url=url, **read_attributes(element, src, ("method",)))


def _reject(element: etree._Element, src: Source) -> Reject:
    text_of(element, src, required=False)
    return build(Reject, element, src, **read_attributes(element, src, ("reason",)))


def _play(element: etree._Element, src: Source) -> Play:
    attributes = read_attributes(element, src, ("loop", "digits"))
    media = text_of(element, src, required="digits" not in attributes)  # <Play digits="1234"/> plays no media
    if media and not _URI_SCHEME.match(media) and not _RELATIVE_MEDIA.search(media):
        media = f"sound:{media}"
    return build(Play, element, src, media=media, **attributes)


def _say(element: etree._Element, src: Source) -> Say:
    # Whitespace inside the text is the speaker's business; an empty <Say/> says nothing, as Twilio's does.
    text = " ".join(text_of(element, src, required=False).split())
    return build(Say, element, src, text=text, **read_attributes(element, src, ("voice", "language", "loop")))


def _gather(element: etree._Element, src: Source) -> Gather:
    kind = src.value(element.get("input")).strip().lower()
    if kind and set(kind.split()) != {"dtmf"}:
        message = "speech recognition is not supported, only dtmf" if "speech" in kind else "must be dtmf"
        raise src.error(f'<Gather> input="{shown(kind)}": {message}', element)
    no_stray_text(element, src)
    nested: list[Verb] = []
    for child in elements(element, src):
        tag = str(child.tag)
        if tag in _VERBS and tag not in GATHER_NESTED:
            allowed = ", ".join(f"<{name}>" for name in sorted(GATHER_NESTED))
            raise src.error(f"<{tag_name(child)}> cannot be nested in <Gather> (only {allowed})", child)
        if (verb := _parse_verb(child, src)) is not None:
            nested.append(verb)
    attributes = read_attributes(element, src, ("action", "method", "timeout", "numDigits"))
    if element.get("finishOnKey") is not None:  # finishOnKey="" is meaningful: no key finishes
        attributes["finishOnKey"] = src.value(element.get("finishOnKey")).strip()
    return build(Gather, element, src, verbs=tuple(nested), **attributes)


def _record(element: etree._Element, src: Source) -> Record:
    text_of(element, src, required=False)
    names = (
        "action",
        "method",
        "timeout",
        "maxLength",
        "playBeep",
        "recordingStatusCallback",
        "recordingStatusCallbackMethod",
    )
    attributes = read_attributes(element, src, names)
    if "recordingStatusCallbackMethod" in attributes:
        attributes["recordingStatusCallbackMethod"] = attributes["recordingStatusCallbackMethod"].upper()
    if element.get("finishOnKey") is not None:  # finishOnKey="" is meaningful: no key finishes
        attributes["finishOnKey"] = src.value(element.get("finishOnKey")).strip()
    return build(Record, element, src, **attributes)


_CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})


def _status_callback(element: etree._Element, src: Source) -> StatusCallback | None:
    """A noun's ``statusCallback`` / ``statusCallbackMethod`` / ``statusCallbackEvent`` (Twilio's)."""
    values = read_attributes(element, src, ("statusCallback", "statusCallbackMethod", "statusCallbackEvent"))
    if "statusCallback" not in values:
        return None
    method = values.get("statusCallbackMethod", "POST").upper()
    if method not in ("GET", "POST"):
        raise src.error(f'<{tag_name(element)}> statusCallbackMethod="{shown(method)}": must be GET or POST', element)
    events = frozenset(values.get("statusCallbackEvent", "completed").replace(",", " ").split())
    if not events or not events <= _CALL_EVENTS:
        known = " ".join(sorted(_CALL_EVENTS))
        raise src.error(f"<{tag_name(element)}> statusCallbackEvent: each of {known}", element)
    return StatusCallback(url=values["statusCallback"], method=cast("HttpMethod", method), events=events)


def _number(element: etree._Element, src: Source) -> DialNoun:
    extras = read_attributes(element, src, ("sendDigits", "url", "method"))
    callback = _status_callback(element, src)
    return build(Number, element, src, number=text_of(element, src), status_callback=callback, **extras)


def _client(element: etree._Element, src: Source) -> DialNoun:
    whisper = read_attributes(element, src, ("url", "method"))
    callback = _status_callback(element, src)
    return build(Client, element, src, name=text_of(element, src), status_callback=callback, **whisper)


def _sip(element: etree._Element, src: Source) -> DialNoun:
    whisper = read_attributes(element, src, ("url", "method"))
    callback = _status_callback(element, src)
    return build(Sip, element, src, uri=text_of(element, src), status_callback=callback, **whisper)


_VERBS: Mapping[str, Callable[[etree._Element, Source], Verb]] = {
    "Dial": _dial,
    "Hangup": _hangup,
    "Pause": _pause,
    "Redirect": _redirect,
    "Reject": _reject,
    "Play": _play,
    "Say": _say,
    "Gather": _gather,
    "Record": _record,
    "Sms": _sms,
}

_NOUNS: Mapping[str, Callable[[etree._Element, Source], DialNoun]] = {
    "Number": _number,
    "Client": _client,
    "Sip": _sip,
    "Uri": _sip,  # Restcomm's noun for a SIP URI: dialed as <Sip>
}


def _parse_verb(element: etree._Element, src: Source) -> Verb | None:
    parse = _VERBS.get(str(element.tag))
    if parse is None:
        # Restcomm skips a verb it does not know; so do we, saying so once.
        warning = f"{redact_url(src.name)}, line {line_of(element)}: unknown verb <{tag_name(element)}> skipped"
        log.warning("%s", warning)
        src.warnings.append(warning)
        return None
    return parse(element, src)
