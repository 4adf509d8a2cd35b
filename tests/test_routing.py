"""From RCML nouns to dial strings, and which REFER targets may reach RCML at all."""

from __future__ import annotations

import pytest

from models.config import NumberConfig, RoutingSettings, Settings
from models.rcml import Client, Number, Sip
from stasis_app.routing import UnsafeTarget, check_refer_target, dial_string, noun_label, sip_headers

SETTINGS = Settings(
    numbers=(NumberConfig(number="1002", voice_url="app:x"),),
    routing=RoutingSettings(client="PJSIP/{client}", number="PJSIP/{number}@trunk", sip="PJSIP/trunk/{uri}"),
)


@pytest.mark.parametrize(
    ("noun", "expected"),
    [
        (Number(number="1002"), "Local/1002@rcml/n"),  # ours: back into the Stasis context, its Voice app
        (Number(number="+15551234"), "PJSIP/+15551234@trunk"),
        (Client(name="bob"), "PJSIP/bob"),
        (Sip(uri="sip:alice@example.com"), "PJSIP/trunk/sip:alice@example.com"),
    ],
)
def test_dial_string(noun, expected):
    assert dial_string(SETTINGS, noun) == expected


@pytest.mark.parametrize(
    "noun",
    [
        Number(number="1002&PJSIP/carol"),
        Number(number="1002,30"),
        Client(name="bob/x"),
        Client(name="a(b)"),
        Sip(uri="sip:a@b&PJSIP/c"),
        Sip(uri="tel:+1555"),
    ],
)
def test_dial_string_refuses_what_could_change_it(noun):
    with pytest.raises(UnsafeTarget):
        dial_string(SETTINGS, noun)


@pytest.mark.parametrize("target", ["1002", "carol", "+15551234", "*72#", "a.b_c-d", "9" * 64])
def test_plain_refer_targets_pass(target):
    assert check_refer_target(target) == target


@pytest.mark.parametrize(
    "target", ["1002&PJSIP/carol", "carol/x", "1002,30", "a(b)", "a)", "x@y", "a b", "a\tb", "a\x00b", "", "9" * 65]
)
def test_refer_targets_that_could_change_a_dial_string_are_refused(target):
    with pytest.raises(UnsafeTarget):
        check_refer_target(target)


def test_noun_label_is_what_the_rcml_app_knows():
    assert noun_label(Sip(uri="sip:carol@example.com")) == "carol"
    assert noun_label(Client(name="bob")) == "bob"
    assert noun_label(Number(number="1002")) == "1002"


def test_sip_uri_x_headers_go_on_the_invite_not_into_the_dial_string():
    noun = Sip(uri="sip:bob@example.com?X-Account=42&X-Note=hello%20there")
    assert dial_string(SETTINGS, noun) == "PJSIP/trunk/sip:bob@example.com"
    assert sip_headers(noun) == {"X-Account": "42", "X-Note": "hello there"}
    assert noun_label(noun) == "bob"


@pytest.mark.parametrize(
    "uri",
    [
        "sip:bob@example.com?Route=sip:evil",  # not an X- header
        "sip:bob@example.com?X-A=1%0D%0AVia:%20evil",  # a CR LF in the value: header injection
        "sip:bob@example.com?X-A=" + "v" * 257,
        "sip:bob@example.com?" + "&".join(f"X-H{i}=1" for i in range(17)),
    ],
)
def test_sip_uri_headers_that_could_inject_are_refused(uri):
    with pytest.raises(UnsafeTarget):
        dial_string(SETTINGS, Sip(uri=uri))
