"""Bounded, fixed-seed fuzzing of the RCML parser: whatever the bytes, a Document or one MarkupError line."""

from __future__ import annotations

import random
import time
from pathlib import Path

from models.rcml import Document
from stasis_app.errors import MarkupError
from stasis_app.rcml import parse_rcml

CASES = 5000
SEED = 20261202

EXAMPLES = sorted((Path(__file__).parent.parent / "examples" / "apps").glob("*.xml"))
SEEDS = [path.read_text() for path in EXAMPLES] + [
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n  <Pause length="2"/>\n  <Play loop="3">beep</Play>\n'
    '  <Dial action="next.xml" method="GET" timeout="20" timeLimit="60" callerId="$core_From">'
    "<Number>1002</Number><Client>bob</Client><Sip>sip:a@b</Sip></Dial>\n"
    '  <Redirect method="post">app:x</Redirect>\n  <Reject reason="busy"/>\n  <Hangup/>\n</Response>\n',
]
# Pieces that XML, lxml and our own parser treat specially.
# fmt: off
TOKENS = [
    "<", ">", "&", '"', "'", "/", "=", "--", "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#0;", "&#x10FFFF;",
    "&#xD800;", "&lol;", "\x00", "\x01", "\ufeff", "\u202e", "\U0001f600", "\r\n", " ", "$core_", "$core_From",
    '<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0" encoding="latin-1"?>', "<?xml-stylesheet?>",
    '<?xml-stylesheet href="a" encoding="x"?>', "<!DOCTYPE Response>", '<!ENTITY x "y">', "<Response>",
    "</Response>", "<Dial>", "</Dial>", "<Number>", "<Client>", "<Sip>", "<Say>", "<Hangup/>", "<Pause/>",
    'timeout="', 'timeLimit="', 'length="', 'loop="', 'method="', 'reason="', "9" * 400, "-1", "1e9", "0x10",
    "1.5", 'xmlns="urn:x"', 'xmlns:a="urn:a"', "<a:Dial>", "{urn:x}", "\t", "é", "\xff",
]
# fmt: on
PARAM_VALUES = ["a--b", "1002", "", "</Number><Hangup/>", '"&<>', "\x00\x01", "9" * 5000, "-->", "\ud800x"]


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(text))
        match rng.randrange(5):
            case 0:
                text = text[:at] + rng.choice(TOKENS) + text[at:]
            case 1:
                text = text[:at] + text[at + rng.randint(1, 20) :]
            case 2:
                end = min(len(text), at + rng.randint(1, 40))
                text = text[:at] + text[at:end] * rng.randint(2, 5) + text[at:]
            case 3:
                other = rng.randint(0, len(text))
                text = text[:other] + text[at : at + 10] + text[other:]
            case _:
                text = text[:at] + chr(rng.randrange(0x20, 0x3000)) + text[at + 1 :]
    return text


def as_input(rng: random.Random, text: str) -> str | bytes:
    match rng.randrange(4):
        case 0:
            return text
        case 1:
            return text.encode("utf-8", "surrogatepass")
        case 2:
            return text.encode("latin-1", "replace")
        case _:
            raw = bytearray(text.encode("utf-8", "replace"))
            for _ in range(rng.randint(1, 3)):
                if raw:
                    raw[rng.randrange(len(raw))] = rng.randrange(256)
            return bytes(raw)


def test_mutated_documents_give_a_document_or_a_markup_error():
    rng = random.Random(SEED)
    outcomes = {"document": 0, "markup error": 0}
    started = time.monotonic()
    for case in range(CASES):
        text = as_input(rng, mutate(rng, rng.choice(SEEDS)))
        params = {"From": rng.choice(PARAM_VALUES), "ReferTarget": rng.choice(PARAM_VALUES)} if case % 2 else None
        try:
            result: Document | str = parse_rcml(text, "app:fuzz", params)
        except MarkupError as exc:
            result = str(exc)
        except Exception as exc:  # the finding: anything else escapes to a session task
            raise AssertionError(f"case {case}: {type(exc).__name__}: {exc} for {text!r}") from None
        if isinstance(result, str):
            assert "\n" not in result, (case, text)
            assert len(result) < 400, (case, text)
            outcomes["markup error"] += 1
        else:
            outcomes["document"] += 1
    assert time.monotonic() - started < 20
    # Both outcomes are exercised: the mutations are neither all harmless nor all fatal.
    assert min(outcomes.values()) > CASES // 20, outcomes
