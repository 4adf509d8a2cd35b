"""Decoding websocket messages: the type read from the head picks the model, events nobody uses are not parsed,
and whatever the shape of the message the result is what the full union parse gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.ari import (
    EVENT_ADAPTER,
    ChannelTransfer,
    StasisStart,
    UnknownEvent,
)
from models.ari_messages import event_type, ignored_event, parse_event
from stasis_app.ari import events

SEED = Path(__file__).parent / "captures" / "seed.jsonl"
MESSAGES = [json.dumps(json.loads(line)["event"], separators=(",", ":")) for line in SEED.read_text().splitlines()]


def test_the_type_is_read_from_the_head_or_not_at_all():
    assert event_type('{"type":"StasisStart","channel":{}}') == "StasisStart"
    assert event_type('{\n  "type": "StasisStart"}') is None  # ari.conf pretty=yes: parsed the long way
    assert event_type(b'{"type":"StasisStart"}') is None
    assert event_type('{"type":"' + "x" * 100) is None
    assert event_type('{"channel":{},"type":"StasisStart"}') is None  # after an object: maybe not the event's
    # Asterisk writes a ChannelHangupRequest's own fields first.
    assert event_type('{"cause":32,"soft":true,"type":"ChannelHangupRequest","channel":{}}') == "ChannelHangupRequest"
    assert event_type('{"cause_txt":"' + "x" * 60 + '","type":"ChannelHangupRequest"}') is None  # too far in


@pytest.mark.parametrize("message", MESSAGES, ids=[json.loads(m)["type"] for m in MESSAGES])
def test_every_captured_event_parses_as_the_union_parses_it(message):
    assert parse_event(message) == EVENT_ADAPTER.validate_json(message)
    pretty = json.dumps(json.loads(message), indent=2)
    assert parse_event(pretty) == parse_event(message)


def test_a_message_whose_body_says_another_type_is_parsed_for_what_it_is():
    transfer = next(m for m in MESSAGES if '"type":"ChannelTransfer"' in m)
    relabelled = '{"type":"StasisStart",' + transfer[1:]  # a second "type" key: JSON's last one wins
    assert isinstance(parse_event(relabelled), ChannelTransfer)


def test_unknown_types_are_kept_whole_and_known_ones_drop_fields_nobody_reads():
    unknown = parse_event('{"type":"ChannelVarset","variable":"X","value":"1"}')
    assert isinstance(unknown, UnknownEvent)
    assert unknown.model_extra == {"variable": "X", "value": "1"}
    start = next(m for m in MESSAGES if '"type":"StasisStart"' in m)
    event = parse_event(start.replace('"args":', '"from_a_newer_asterisk":{"x":[1,2]},"args":'))
    assert isinstance(event, StasisStart)
    assert event.model_extra in (None, {})


def test_a_known_event_missing_a_field_is_a_validation_error():
    with pytest.raises(ValidationError):
        parse_event('{"type":"StasisStart","args":[]}')


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_connected(self, reconnect: bool) -> None:
        pass

    def on_event(self, event) -> None:
        self.seen.append(event.type)


def test_the_reader_hands_over_every_event_but_the_unused_ones_unparsed():
    # The capture has none of the unused types (the app's event filter keeps them away): two that would not
    # even parse go in the middle, to show they are dropped before any parse.
    unused = ['{"type":"Dial","peer":"not a channel"}', '{"type":"PlaybackStarted"}']
    messages = [*MESSAGES[:5], *unused, *MESSAGES[5:]]
    handler = Recorder()
    for message in messages:
        events._deliver(handler, message)
    kinds = [json.loads(m)["type"] for m in messages]
    # Of the capture's 7 ChannelStateChange only the 2 "Ringing" ones, of its 3 ChannelTransfer only the REFER
    # (the other 2 echo the app's transfer_progress).
    dropped = {"ChannelStateChange": 5, "ChannelTransfer": 2, "Dial": 1, "PlaybackStarted": 1}
    assert {kind: kinds.count(kind) - handler.seen.count(kind) for kind in dropped} == dropped
    assert [kind for kind in handler.seen if kind not in dropped] == [kind for kind in kinds if kind not in dropped]


def test_state_changes_but_ringing_and_transfer_echoes_are_dropped_unparsed():
    # Not even valid events: dropped on their text alone.
    up = '{"type":"ChannelStateChange","channel":{"state":"Up"}}'
    echo = '{"type":"ChannelTransfer","referred_by":{},"state":"channel_answered"}'
    assert ignored_event("ChannelStateChange", up)
    assert ignored_event("ChannelTransfer", echo)
    ringing = next(m for m in MESSAGES if '"type":"ChannelStateChange"' in m and '"state":"Ringing"' in m)
    refer = next(m for m in MESSAGES if '"type":"ChannelTransfer"' in m and '"state":"channel_' not in m)
    for message in (ringing, refer):
        assert not ignored_event(event_type(message), message)
    # A pretty-printed message has no type read from its head: only a parse can tell, so it is parsed.
    pretty_up = json.dumps(json.loads(ringing.replace('"Ringing"', '"Up"')), indent=2)
    assert not ignored_event(event_type(pretty_up), pretty_up)
    handler = Recorder()
    for message in (up, echo, ringing, refer, pretty_up):
        events._deliver(handler, message)
    assert handler.seen == ["ChannelStateChange", "ChannelTransfer", "ChannelStateChange"]
