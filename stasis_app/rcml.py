"""Parse an RCML document (``<Response>`` and its verbs) into :mod:`models.rcml`.

The parser follows Restcomm/Twilio spelling and semantics:

* Verbs: ``Dial`` (nouns ``Number``, ``Client``, ``Sip``; plain text is a Number, as in
  ``<Dial>1002</Dial>``), ``Hangup``, ``Pause``, ``Redirect``, ``Reject``, ``Play``.
* An unknown verb or noun (``Say``, ``Gather``, ``Conference``...) is an error naming it and its line,
  as Restcomm does. Unknown *attributes* are ignored, as Twilio does, so documents written for Twilio
  keep working. A known attribute with a bad value (``timeout="abc"``, ``method="PUT"``) is an error.
* ``Play`` text without a URI scheme (``hello-world``) is an Asterisk sound name and becomes
  ``sound:hello-world``; anything with a scheme (``sound:``, ``tone:``, ``recording:``, ``http(s)://``)
  is passed to Asterisk as written.
* Relative URLs (``Dial action``, ``Redirect``) are kept as written: :mod:`stasis_app.webhook`
  resolves them against the URL of the document that contained them.
* No DTD is ever loaded and no entity is expanded (XXE, "billion laughs"): a document with a
  ``DOCTYPE`` is refused outright, since RCML never needs one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

from lxml import etree
from pydantic import BaseModel, ValidationError

from models.rcml import (
    Client,
    Dial,
    DialNoun,
    Document,
    Hangup,
    Number,
    Pause,
    Play,
    Redirect,
    Reject,
    Sip,
    Verb,
)
from stasis_app.errors import MarkupError

__all__ = ["parse_rcml"]

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
_XML_DECLARATION = re.compile(r"\A\ufeff?\s*<\?xml[^>]*\?>")
_LXML_POSITION = re.compile(r", line \d+, column (\d+)$")
_URI_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

_Model = TypeVar("_Model", bound=BaseModel)


def parse_rcml(text: str | bytes, source: str) -> Document:
    """Parse an RCML document; ``source`` (a URL or file name) is named in every error.

    Bytes are decoded as the XML declaration says (UTF-8 by default); a str is used as is.
    Raises :class:`MarkupError` with the line at fault.
    """
    if isinstance(text, str):
        text = _XML_DECLARATION.sub("", text, count=1)
    try:
        root = etree.fromstring(text, _PARSER)
    except etree.XMLSyntaxError as exc:
        raise MarkupError(source, _syntax_message(exc), exc.lineno or None) from None
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:
        raise MarkupError(source, "DOCTYPE declarations are not allowed", _doctype_line(text))
    if root.tag != "Response":
        raise MarkupError(source, f"the root element must be <Response>, not <{root.tag}>", _line(root))
    _no_stray_text(root, source)
    verbs = tuple(_parse_verb(element, source) for element in _elements(root, source))
    return Document(verbs=verbs, source=source)


def _line(element: etree._Element) -> int | None:
    return cast("int | None", element.sourceline)  # lxml-stubs leave it untyped


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    # lxml says "expected '>', line 3, column 1": the line goes in MarkupError, keep the column.
    match = _LXML_POSITION.search(exc.msg)
    if match is None:
        return f"not well-formed XML: {exc.msg}"
    return f"not well-formed XML: {exc.msg[: match.start()]} (column {match.group(1)})"


def _doctype_line(text: str | bytes) -> int | None:
    marker = "<!DOCTYPE" if isinstance(text, str) else b"<!DOCTYPE"
    index = text.find(marker)  # type: ignore[arg-type]  # str.find(str) or bytes.find(bytes)
    if index < 0:
        return None
    newline = "\n" if isinstance(text, str) else b"\n"
    return text.count(newline, 0, index) + 1  # type: ignore[arg-type]


def _elements(parent: etree._Element, source: str) -> Iterator[etree._Element]:
    """The child elements; an entity reference (only possible with a DTD) is refused, not skipped."""
    for child in parent:
        if not isinstance(child.tag, str):
            raise MarkupError(source, f"unexpected {child!r} in <{parent.tag}>", _line(child))
        yield child


def _no_stray_text(element: etree._Element, source: str) -> None:
    """Text between verbs (or nouns) is almost always a typo; say so instead of ignoring it."""
    if element.text and element.text.strip():
        text = element.text.strip()
        raise MarkupError(source, f"unexpected text {text!r} in <{element.tag}>", _line(element))
    for child in element:
        if child.tail and child.tail.strip():
            raise MarkupError(source, f"unexpected text {child.tail.strip()!r} after <{child.tag}>", _line(child))


def _text(element: etree._Element, source: str, *, required: bool = True) -> str:
    """The stripped text of a verb or noun that takes text and no child elements."""
    for child in _elements(element, source):
        raise MarkupError(source, f"<{element.tag}> takes text, not <{child.tag}>", _line(child))
    value = (element.text or "").strip()
    if required and not value:
        raise MarkupError(source, f"<{element.tag}> is empty", _line(element))
    return value


def _attributes(element: etree._Element, names: tuple[str, ...]) -> dict[str, str]:
    """The known attributes (RCML spelling) that have a value; unknown ones are ignored, like Twilio."""
    values: dict[str, str] = {}
    for name in names:
        value = element.get(name)
        if value is not None and value.strip():
            values[name] = value.strip()
    if "method" in values:
        values["method"] = values["method"].upper()  # Twilio accepts method="post"
    return values


def _build(model: type[_Model], element: etree._Element, source: str, **fields: Any) -> _Model:
    """Validate ``fields`` (RCML attribute names) into ``model``; a bad value names the attribute."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        written = element.get(name, error["input"])  # as written, before method="put" became "PUT"
        message = f'<{element.tag}> {name}="{written}": {error["msg"]}'
        raise MarkupError(source, message, _line(element)) from None


def _dial(element: etree._Element, source: str) -> Dial:
    nouns: list[DialNoun] = []
    text = (element.text or "").strip()
    if text:
        nouns.append(Number(number=text))
    for child in _elements(element, source):
        parse_noun = _NOUNS.get(child.tag)
        if parse_noun is None:
            raise MarkupError(source, f"unsupported noun <{child.tag}> in <Dial>", _line(child))
        if text:
            raise MarkupError(source, "<Dial> has both text and nouns", _line(element))
        nouns.append(parse_noun(child, source))
    _no_stray_text_after_nouns(element, source)
    if not nouns:
        raise MarkupError(source, "<Dial> has nothing to dial", _line(element))
    attributes = _attributes(element, ("action", "method", "timeout", "timeLimit", "callerId"))
    return _build(Dial, element, source, nouns=tuple(nouns), **attributes)


def _no_stray_text_after_nouns(element: etree._Element, source: str) -> None:
    for child in element:
        if child.tail and child.tail.strip():
            raise MarkupError(source, "<Dial> has both text and nouns", _line(child))


def _hangup(element: etree._Element, source: str) -> Hangup:
    _text(element, source, required=False)
    return Hangup()


def _pause(element: etree._Element, source: str) -> Pause:
    _text(element, source, required=False)
    return _build(Pause, element, source, **_attributes(element, ("length",)))


def _redirect(element: etree._Element, source: str) -> Redirect:
    url = _text(element, source)
    return _build(Redirect, element, source, url=url, **_attributes(element, ("method",)))


def _reject(element: etree._Element, source: str) -> Reject:
    _text(element, source, required=False)
    return _build(Reject, element, source, **_attributes(element, ("reason",)))


def _play(element: etree._Element, source: str) -> Play:
    media = _text(element, source)
    if not _URI_SCHEME.match(media):
        media = f"sound:{media}"
    return _build(Play, element, source, media=media, **_attributes(element, ("loop",)))


def _number(element: etree._Element, source: str) -> DialNoun:
    return Number(number=_text(element, source))


def _client(element: etree._Element, source: str) -> DialNoun:
    return Client(name=_text(element, source))


def _sip(element: etree._Element, source: str) -> DialNoun:
    return Sip(uri=_text(element, source))


_VERBS: Mapping[str, Callable[[etree._Element, str], Verb]] = {
    "Dial": _dial,
    "Hangup": _hangup,
    "Pause": _pause,
    "Redirect": _redirect,
    "Reject": _reject,
    "Play": _play,
}

_NOUNS: Mapping[str, Callable[[etree._Element, str], DialNoun]] = {
    "Number": _number,
    "Client": _client,
    "Sip": _sip,
}


def _parse_verb(element: etree._Element, source: str) -> Verb:
    parse = _VERBS.get(str(element.tag))
    if parse is None:
        raise MarkupError(source, f"unsupported verb <{element.tag}>", _line(element))
    return parse(element, source)
