"""RCML parsing: every verb, noun and attribute, and every way a document can be wrong."""

from __future__ import annotations

import time

import pytest

from models.rcml import Client, Dial, Document, Hangup, Number, Pause, Play, Redirect, Reject, Sip
from stasis_app.errors import MarkupError
from stasis_app.rcml import parse_rcml


def parse(text: str | bytes) -> Document:
    return parse_rcml(text, "http://app.test/voice.xml")


def only(text: str) -> object:
    (verb,) = parse(f"<Response>{text}</Response>").verbs
    return verb


def markup_error(text: str | bytes) -> MarkupError:
    with pytest.raises(MarkupError) as caught:
        parse(text)
    return caught.value


def test_empty_response_is_a_document_with_no_verbs():
    assert parse("<Response/>") == Document(verbs=(), source="http://app.test/voice.xml")
    assert parse("<Response>\n  <!-- nothing yet -->\n</Response>").verbs == ()


def test_verbs_keep_their_order():
    document = parse("<Response><Pause/><Play>beep</Play><Hangup/></Response>")
    assert [verb.verb for verb in document.verbs] == ["Pause", "Play", "Hangup"]


def test_dial_with_every_noun_and_attribute():
    dial = only(
        '<Dial action="/after" method="GET" timeout="20" timeLimit="60" callerId="+15551234">'
        "<Number> 1002 </Number><Client>bob</Client><Sip>sip:alice@example.com</Sip>"
        "</Dial>"
    )
    assert dial == Dial(
        nouns=(Number(number="1002"), Client(name="bob"), Sip(uri="sip:alice@example.com")),
        action="/after",
        method="GET",
        timeout=20,
        time_limit=60,
        caller_id="+15551234",
    )


def test_dial_defaults():
    dial = only("<Dial><Client>bob</Client></Dial>")
    assert isinstance(dial, Dial)
    assert (dial.action, dial.method, dial.timeout, dial.time_limit, dial.caller_id) == (
        None,
        "POST",
        30,
        14400,
        None,
    )


def test_dial_text_is_a_number():
    assert only("<Dial>\n  1002\n</Dial>") == Dial(nouns=(Number(number="1002"),))


def test_dial_method_is_case_insensitive_and_relative_action_is_kept():
    dial = only('<Dial action="next.xml" method="get">1002</Dial>')
    assert isinstance(dial, Dial)
    assert (dial.action, dial.method) == ("next.xml", "GET")


def test_unknown_attributes_are_ignored_like_twilio():
    dial = only('<Dial answerOnBridge="true" ringTone="us"><Number byoc="BY1">1002</Number></Dial>')
    assert dial == Dial(nouns=(Number(number="1002"),))


def test_dial_extras_are_parsed():
    dial = only(
        '<Dial record="record-from-ringing" hangupOnStar="true" ringbackTone="tone:busy">'
        '<Number sendDigits="ww1234#">1002</Number></Dial>'
    )
    assert isinstance(dial, Dial)
    assert (dial.record, dial.hangup_on_star, dial.ringback_tone) == ("record-from-ringing", True, "tone:busy")
    assert dial.nouns == (Number(number="1002", send_digits="ww1234#"),)


def test_a_noun_url_is_its_whisper():
    dial = only('<Dial><Client url="/w.xml" method="get">bob</Client><Sip url="w2.xml">sip:c@h</Sip></Dial>')
    assert isinstance(dial, Dial)
    assert dial.nouns == (Client(name="bob", url="/w.xml", method="GET"), Sip(uri="sip:c@h", url="w2.xml"))


@pytest.mark.parametrize(
    ("written", "record"),
    [
        ("true", "record-from-answer"),  # Restcomm's
        ("false", "do-not-record"),
        ("record-from-answer-dual", "record-from-answer"),  # recorded mono, with a warning
        ("do-not-record", "do-not-record"),
    ],
)
def test_dial_record_values(written, record):
    dial = only(f'<Dial record="{written}">1002</Dial>')
    assert isinstance(dial, Dial)
    assert dial.record == record


@pytest.mark.parametrize(
    "bad", ['<Dial record="always">1002</Dial>', '<Dial><Number sendDigits="12;x">1</Number></Dial>']
)
def test_dial_extras_bad_values_are_invalid_rcml(bad):
    with pytest.raises(MarkupError):
        only(bad)


def test_hangup():
    assert only("<Hangup/>") == Hangup()


def test_pause():
    assert only("<Pause/>") == Pause(length=1)
    assert only('<Pause length="5"/>') == Pause(length=5)


def test_redirect():
    assert only("<Redirect> http://app.test/next.xml </Redirect>") == Redirect(url="http://app.test/next.xml")
    assert only('<Redirect method="GET">next.xml</Redirect>') == Redirect(url="next.xml", method="GET")


def test_reject():
    assert only("<Reject/>") == Reject(reason="rejected")
    assert only('<Reject reason="busy"/>') == Reject(reason="busy")


def test_play_plain_name_is_an_asterisk_sound():
    assert only("<Play>hello-world</Play>") == Play(media="sound:hello-world")
    assert only('<Play loop="3">tt-monkeys</Play>') == Play(media="sound:tt-monkeys", loop=3)


@pytest.mark.parametrize("media", ["sound:hello-world", "tone:ring", "recording:greeting", "https://cdn.test/a.wav"])
def test_play_media_with_a_scheme_is_passed_as_is(media: str):
    assert only(f"<Play>{media}</Play>") == Play(media=media)


def test_entities_and_character_references_are_decoded():
    assert only("<Dial><Client>a&amp;b&#65;</Client></Dial>") == Dial(nouns=(Client(name="a&bA"),))


def test_bytes_with_an_encoding_declaration():
    text = '<?xml version="1.0" encoding="ISO-8859-1"?>\n<Response><Play>caf\xe9</Play></Response>'
    assert parse(text.encode("latin-1")).verbs == (Play(media="sound:caf\xe9"),)
    # The same document already decoded to str: the declaration no longer applies.
    assert parse(text).verbs == (Play(media="sound:caf\xe9"),)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("<Response>\n<Dial>\n<Queue>support</Queue></Dial></Response>", 3, "unsupported noun"),
        ('<Response>\n\n<Dial timeout="abc">1</Dial></Response>', 3, '<Dial> timeout="abc"'),
        (
            '<Response>\n<Dial method="PUT">1</Dial></Response>',
            2,
            "<Dial> method=\"PUT\": Input should be 'GET'",
        ),
        ('<Response>\n<Dial timeout="0">1</Dial></Response>', 2, "greater than or equal to 1"),
        ('<Response>\n<Pause length="x"/></Response>', 2, '<Pause> length="x"'),
        ('<Response>\n<Play loop="-1">x</Play></Response>', 2, '<Play> loop="-1"'),
        ('<Response>\n<Reject reason="later"/></Response>', 2, '<Reject> reason="later"'),
        ('<Response>\n<Redirect method="put">x</Redirect></Response>', 2, '<Redirect> method="put"'),
        ("<Response>\n<Dial/></Response>", 2, "<Dial> has nothing to dial"),
        ("<Response>\n<Dial>1<Client>bob</Client></Dial></Response>", 2, "both text and nouns"),
        ("<Response>\n<Dial><Client> </Client></Dial></Response>", 2, "<Client> is empty"),
        ("<Response>\n<Play/></Response>", 2, "<Play> is empty"),
        ("<Response>\n<Redirect/></Response>", 2, "<Redirect> is empty"),
        ("<Response>\n<Play><Number>1</Number></Play></Response>", 2, "<Play> takes text, not <Number>"),
        ("<Response>\nhello<Hangup/></Response>", 1, "unexpected text 'hello'"),
        ("<Response>\n<Hangup/>oops</Response>", 2, "unexpected text 'oops' after <Hangup>"),
    ],
)
def test_invalid_rcml_names_the_source_line_and_reason(text: str, line: int, reason: str):
    error = markup_error(text)
    assert (error.source, error.line) == ("http://app.test/voice.xml", line)
    assert reason in error.reason
    assert str(error).startswith(f"invalid RCML from http://app.test/voice.xml, line {line}: ")
    assert "\n" not in str(error)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("<Response>\n<Dial>1</Dial\n</Response>", 3),
        ("<Response>\n<Hangup>\n</Response>", 3),
        ("", 1),
        ("just text", 1),
    ],
)
def test_malformed_xml_names_the_line(text: str, line: int):
    error = markup_error(text)
    assert error.line == line
    assert error.reason.startswith("not well-formed XML: ")
    assert "\n" not in str(error)


def test_external_entity_is_not_loaded(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    text = (
        f'<?xml version="1.0"?>\n<!DOCTYPE Response [<!ENTITY x SYSTEM "file://{secret}">]>\n'
        "<Response><Play>&x;</Play></Response>"
    )
    error = markup_error(text)
    assert error.line == 2
    assert "DOCTYPE" in error.reason
    assert "top secret" not in str(error)


def laughs(depth: int) -> bytes:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, depth + 1)
    )
    return f"<!DOCTYPE Response [{entities}]>\n<Response><Play>&lol{depth};</Play></Response>".encode()


@pytest.mark.parametrize("depth", [2, 9])
def test_billion_laughs_is_not_expanded(depth: int):
    started = time.monotonic()
    error = markup_error(laughs(depth))
    assert time.monotonic() - started < 1
    # A small one parses and is refused for its DOCTYPE; libxml2 itself stops the full-size one.
    assert "DOCTYPE" in error.reason or "amplification" in error.reason
    assert "lollollol" not in str(error)


def test_undefined_entity_is_malformed():
    error = markup_error("<Response><Play>&nope;</Play></Response>")
    assert "nope" in error.reason


@pytest.mark.parametrize(
    "prolog",
    [
        '<?xml version="1.0" encoding="UTF-8"?><?xml version="1.0" encoding="UTF-8"?>',
        '<?xml-stylesheet href="x.xsl" encoding="UTF-8"?>',
    ],
)
def test_what_lxml_refuses_in_a_str_is_a_markup_error(prolog: str):
    # lxml raises ValueError for a str that (still) starts with an encoding declaration.
    error = markup_error(prolog + "\n<Response><Hangup/></Response>")
    assert error.reason.startswith("not well-formed XML: ")


def test_stylesheet_instruction_after_the_declaration_is_ignored():
    text = '<?xml version="1.0" encoding="UTF-8"?>\n<?xml-stylesheet href="x.xsl"?>\n<Response><Hangup/></Response>'
    assert parse(text).verbs == (Hangup(),)
    assert parse(text.encode()).verbs == (Hangup(),)


@pytest.mark.parametrize(
    ("attribute", "written", "used"),
    [
        ("timeLimit", "1" * 300, 86400),
        ("timeLimit", "9" * 5000, 86400),  # past int()'s 4300 digits
        ("timeLimit", "86401", 86400),
        ("timeLimit", "86400", 86400),
        ("timeLimit", "0007200", 7200),
        ("timeout", "1000000", 600),  # as in Restcomm's own tests
        ("timeout", "601", 600),
    ],
)
def test_dial_timeout_and_time_limit_above_the_limit_are_clamped_with_a_warning(
    attribute: str, written: str, used: int, caplog: pytest.LogCaptureFixture
):
    started = time.monotonic()
    dial = only(f'<Dial {attribute}="{written}">1002</Dial>')
    assert time.monotonic() - started < 0.1
    assert isinstance(dial, Dial)
    assert (dial.time_limit if attribute == "timeLimit" else dial.timeout) == used
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    if written.lstrip("0") == str(used):
        assert warnings == []
    else:
        (warning,) = warnings
        assert f"<Dial> {attribute}=" in warning
        assert f"using {used}" in warning
        assert len(warning) < 200


def test_time_limit_is_bounded_in_the_model_too():
    with pytest.raises(ValueError, match="less than or equal to 86400"):
        Dial(nouns=(Number(number="1"),), time_limit=10**300)


@pytest.mark.parametrize("verb", ['<Pause length="{}"/>', '<Play loop="{}">beep</Play>'])
def test_a_huge_number_is_refused_in_one_short_line(verb: str):
    error = markup_error("<Response>" + verb.format("9" * 5000) + "</Response>")
    assert "less than or equal to" in error.reason or "parse" in error.reason
    assert len(str(error)) < 200


def test_too_many_verbs_are_refused_quickly():
    started = time.monotonic()
    error = markup_error("<Response>" + "<Hangup/>" * 100_000 + "</Response>")
    assert time.monotonic() - started < 1
    assert error.reason == "too many verbs (100000; at most 1000)"
    assert len(parse("<Response>" + "<Pause/>" * 1000 + "</Response>").verbs) == 1000


def test_too_many_nouns_are_refused():
    error = markup_error("<Response><Dial>" + "<Client>bob</Client>" * 101 + "</Dial></Response>")
    assert error.reason == "<Dial> has too many nouns (101; at most 100)"


def test_placeholders_are_filled_in_text_and_attributes_but_not_in_comments():
    text = (
        "<!-- transfer to $core_ReferTarget -->\n"
        '<Response><Dial callerId="$core_From"><Number>$core_ReferTarget</Number></Dial></Response>'
    )
    params = {"ReferTarget": "a--b", "From": '"</Dial><Hangup/>'}
    document = parse_rcml(text, "app:refer", params)
    assert document.verbs == (Dial(nouns=(Number(number="a--b"),), caller_id='"</Dial><Hangup/>'),)


def test_a_placeholder_can_fill_a_bare_dial_and_a_method():
    document = parse_rcml(
        '<Response><Dial method="$core_M">$core_To</Dial></Response>', "app:x", {"M": "get", "To": "7"}
    )
    assert document.verbs == (Dial(nouns=(Number(number="7"),), method="GET"),)


def test_without_params_placeholders_are_kept_as_written():
    assert parse("<Response><Play>$core_X</Play></Response>").verbs == (Play(media="sound:$core_X"),)


def test_parsed_as_restcomm_parses_bare_ampersands_no_response_root_and_unknown_verbs(caplog):
    bare = parse_rcml("<Response><Redirect>http://app.test/next?a=1&b=2&amp;c=3</Redirect></Response>", "u")
    assert bare.verbs[0].url == "http://app.test/next?a=1&b=2&c=3"

    lone = parse_rcml("<Dial><Client>bob</Client></Dial>", "u")
    assert [type(verb).__name__ for verb in lone.verbs] == ["Dial"]
    several = parse_rcml(b'<?xml version="1.0"?>\n<Play>sound:hi</Play><Hangup/>', "u")
    assert [type(verb).__name__ for verb in several.verbs] == ["Play", "Hangup"]

    skipped = parse_rcml("<Response>\n<Frobnicate/>\n<Hangup/></Response>", "http://app.test/x.xml")
    assert [type(verb).__name__ for verb in skipped.verbs] == ["Hangup"]
    assert skipped.warnings == ("http://app.test/x.xml, line 2: unknown verb <Frobnicate> skipped",)
    assert [r.getMessage() for r in caplog.records] == list(skipped.warnings)


def test_restcomms_uri_noun_is_a_sip_uri():
    document = parse_rcml("<Response><Dial><Uri>sip:bob@example.com</Uri></Dial></Response>", "u")
    assert document.verbs[0].nouns[0].uri == "sip:bob@example.com"
