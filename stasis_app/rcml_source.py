"""What the RCML parser needs for every verb: where a document came from, one-line errors naming the line, and
attributes read as Restcomm and Twilio read them (placeholders filled, numbers clamped, models built)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from lxml import etree
from pydantic import BaseModel, ValidationError

from stasis_app.errors import MarkupError
from stasis_app.redact import redact_url

__all__ = [
    "MAX_TIME_LIMIT",
    "Source",
    "build",
    "doctype_line",
    "elements",
    "fill_placeholders",
    "first_line",
    "line_of",
    "no_stray_text",
    "placeholder_names",
    "read_attributes",
    "shown",
    "syntax_message",
    "tag_name",
    "text_of",
]

log = logging.getLogger(__name__)

# 24 h: longer than any real call, short enough for any timer (the default, 4 h, is in models.rcml).
MAX_TIME_LIMIT = 86400
# Attributes clamped (with a WARNING) instead of refused: (verb, attribute) -> the largest value used.
_CLAMPED = {("Dial", "timeout"): 600, ("Dial", "timeLimit"): MAX_TIME_LIMIT}
_DIGITS = re.compile(r"[0-9]+")
_SHOWN = 40  # characters of a bad attribute value quoted in an error
_PLACEHOLDER = re.compile(r"\$core_([A-Za-z0-9_]+)")
_LXML_POSITION = re.compile(r"\s*, line \d+, column (\d+)$")
_Model = TypeVar("_Model", bound=BaseModel)


def fill_placeholders(value: str, params: Mapping[str, str]) -> str:
    """Replace every ``$core_X`` in ``value`` with ``params["X"]`` (empty when there is none).

    The placeholder name runs to the end of ``[A-Za-z0-9_]``, so ``$core_FromX`` is the parameter
    ``FromX``, never ``$core_From`` followed by ``X``.
    """
    return _PLACEHOLDER.sub(lambda match: params.get(match.group(1), ""), value)


def placeholder_names(text: str) -> tuple[str, ...]:
    """The ``X`` of every ``$core_X`` in ``text``, each once, in order of appearance."""
    return tuple(dict.fromkeys(_PLACEHOLDER.findall(text)))


@dataclass(frozen=True)
class Source:
    """Where a document came from (for errors) and the parameters its placeholders take."""

    name: str
    params: Mapping[str, str] | None
    warnings: list[str]

    def value(self, raw: str | None) -> str:
        """An attribute value or text as the document means it: placeholders filled, when there are params."""
        if raw is None:
            return ""
        return raw if self.params is None else fill_placeholders(raw, self.params)

    def error(self, message: str, element: etree._Element | None = None) -> MarkupError:
        return MarkupError(self.name, message, None if element is None else line_of(element))


def line_of(element: etree._Element) -> int | None:
    return cast("int | None", element.sourceline)  # lxml-stubs leave it untyped


def tag_name(element: etree._Element) -> str:
    """The tag as written (``{uri}tag`` for a namespaced one), shortened for a one-line message."""
    return shown(str(element.tag))


def shown(value: str, limit: int = _SHOWN) -> str:
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


def first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def syntax_message(exc: etree.XMLSyntaxError) -> str:
    # lxml says "expected '>', line 3, column 1": the line goes in MarkupError, keep the column. Some of
    # its messages span lines ("...out of allowed range\n, line 3, ..."): an error is one line.
    msg = " ".join(str(exc.msg).split())
    match = _LXML_POSITION.search(msg)
    if match is None:
        return f"not well-formed XML: {shown(msg, 120)}"
    return f"not well-formed XML: {shown(msg[: match.start()], 120)} (column {match.group(1)})"


def doctype_line(text: str | bytes) -> int | None:
    marker = "<!DOCTYPE" if isinstance(text, str) else b"<!DOCTYPE"
    index = text.find(marker)  # type: ignore[arg-type]  # str.find(str) or bytes.find(bytes)
    if index < 0:
        return None
    newline = "\n" if isinstance(text, str) else b"\n"
    return text.count(newline, 0, index) + 1  # type: ignore[arg-type]


def elements(parent: etree._Element, src: Source) -> Iterator[etree._Element]:
    """The child elements; an entity reference (only possible with a DTD) is refused, not skipped."""
    for child in parent:
        if not isinstance(child.tag, str):
            raise src.error(f"unexpected {shown(repr(child))} in <{tag_name(parent)}>", child)
        yield child


def no_stray_text(element: etree._Element, src: Source) -> None:
    """Text between verbs (or nouns) is almost always a typo; say so instead of ignoring it."""
    text = src.value(element.text).strip()
    if text:
        raise src.error(f"unexpected text {shown(repr(text))} in <{tag_name(element)}>", element)
    for child in element:
        tail = src.value(child.tail).strip()
        if tail:
            raise src.error(f"unexpected text {shown(repr(tail))} after <{tag_name(child)}>", child)


def text_of(element: etree._Element, src: Source, *, required: bool = True) -> str:
    """The stripped text of a verb or noun that takes text and no child elements."""
    for child in elements(element, src):
        raise src.error(f"<{tag_name(element)}> takes text, not <{tag_name(child)}>", child)
    value = src.value(element.text).strip()
    if required and not value:
        raise src.error(f"<{tag_name(element)}> is empty", element)
    return value


def read_attributes(element: etree._Element, src: Source, names: tuple[str, ...]) -> dict[str, str]:
    """The known attributes (RCML spelling) that have a value; unknown ones are ignored, like Twilio."""
    values: dict[str, str] = {}
    for name in names:
        value = src.value(element.get(name)).strip()
        if value:
            values[name] = _clamped(element, src, name, value)
    for key in ("method", "referMethod"):
        if key in values:
            values[key] = values[key].upper()  # Twilio accepts method="post"
    return values


def _clamped(element: etree._Element, src: Source, name: str, value: str) -> str:
    """``value``, or the largest allowed when it is a whole number above an attribute's clamp."""
    limit = _CLAMPED.get((str(element.tag), name))
    # Compared as digit strings first: int() of thousands of digits is slow, and refused past 4300.
    if limit is None or _DIGITS.fullmatch(value) is None:
        return value
    digits = value.lstrip("0") or "0"
    if len(digits) < len(str(limit)) or (len(digits) == len(str(limit)) and int(digits) <= limit):
        return value
    log.warning(
        '%s, line %s: <%s> %s="%s" is above %d; using %d',
        redact_url(src.name),
        line_of(element),
        element.tag,
        name,
        shown(value),
        limit,
        limit,
    )
    return str(limit)


def build(model: type[_Model], element: etree._Element, src: Source, **fields: Any) -> _Model:
    """Validate ``fields`` (RCML attribute names) into ``model``; a bad value names the attribute."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        # As written (before method="put" became "PUT"), placeholders filled.
        written = src.value(element.get(name)) if element.get(name) is not None else str(error["input"])
        message = f'<{tag_name(element)}> {name}="{shown(written)}": {error["msg"]}'
        raise src.error(message, element) from None
