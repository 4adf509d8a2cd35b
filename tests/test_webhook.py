"""The webhook client: http(s) requests (with respx) and local app: files."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from models.config import Settings, WebhookSettings
from models.rcml import Client, Dial, Document, Hangup, Number, Play, Redirect
from stasis_app import webhook as webhook_module
from stasis_app.errors import MarkupError, WebhookError
from stasis_app.rcml import fill_placeholders
from stasis_app.webhook import Webhooks, resolve_url

HANGUP = "<Response><Hangup/></Response>"
PARAMS = {"CallSid": "CA123", "From": "alice", "To": "1001", "Direction": "inbound"}


@pytest.fixture
def apps(tmp_path: Path) -> Path:
    folder = tmp_path / "apps"
    folder.mkdir()
    return folder


@pytest.fixture
async def webhooks(apps: Path) -> AsyncIterator[Webhooks]:
    settings = Settings(base_dir=apps.parent, webhooks=WebhookSettings(timeout=2))
    async with Webhooks(settings) as client:
        yield client


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


@respx.mock
async def test_post_sends_the_params_as_a_form_body(webhooks: Webhooks):
    route = respx.post("http://app.test/voice").respond(200, text=HANGUP)
    document = await webhooks.fetch("http://app.test/voice", "POST", PARAMS)
    assert document == Document(verbs=(Hangup(),), source="http://app.test/voice")
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form(request) == {key: [value] for key, value in PARAMS.items()}
    assert request.url.query == b""


@respx.mock
async def test_get_sends_the_params_in_the_query_keeping_the_urls_own(webhooks: Webhooks):
    route = respx.get("http://app.test/voice").respond(200, text=HANGUP)
    document = await webhooks.fetch("http://app.test/voice?lang=fr", "GET", PARAMS)
    assert document.source == "http://app.test/voice?lang=fr"
    request = route.calls.last.request
    assert dict(request.url.params) == {"lang": "fr", **PARAMS}
    assert request.content == b""


@respx.mock
@pytest.mark.parametrize(
    ("url", "base", "expected"),
    [
        ("/next.xml", "http://app.test/calls/voice.xml", "http://app.test/next.xml"),
        ("next.xml", "http://app.test/calls/voice.xml", "http://app.test/calls/next.xml"),
        ("../up.xml", "https://app.test/a/b/voice.xml", "https://app.test/a/up.xml"),
        ("http://other.test/x", "http://app.test/voice", "http://other.test/x"),
    ],
)
async def test_relative_urls_resolve_against_the_containing_document(
    webhooks: Webhooks, url: str, base: str, expected: str
):
    route = respx.post(expected).respond(200, text=HANGUP)
    document = await webhooks.fetch(url, "POST", {}, base=base)
    assert route.called
    assert document.source == expected


@respx.mock
async def test_redirected_document_takes_its_final_url_as_source(webhooks: Webhooks):
    respx.post("http://app.test/old").respond(307, headers={"Location": "http://app.test/new/voice"})
    respx.post("http://app.test/new/voice").respond(200, text=HANGUP)
    document = await webhooks.fetch("http://app.test/old", "POST", PARAMS)
    assert document.source == "http://app.test/new/voice"


async def test_relative_url_without_a_base_is_refused(webhooks: Webhooks):
    with pytest.raises(WebhookError, match=r"next\.xml failed: relative URL"):
        await webhooks.fetch("next.xml", "POST", {})


@respx.mock
async def test_http_error_status(webhooks: Webhooks, caplog: pytest.LogCaptureFixture):
    respx.post("http://app.test/voice").respond(500, text="<html>stack trace...</html>")
    with caplog.at_level(logging.DEBUG), pytest.raises(WebhookError) as caught:
        await webhooks.fetch("http://app.test/voice", "POST", PARAMS)
    assert str(caught.value) == "request to http://app.test/voice failed: HTTP 500"
    assert "stack trace" not in caplog.text  # the body of an error page never reaches a log
    assert "HTTP 500" in caplog.text


@respx.mock
async def test_timeout(webhooks: Webhooks):
    respx.post("http://app.test/slow").mock(side_effect=httpx.ReadTimeout("read timed out"))
    with pytest.raises(WebhookError) as caught:
        await webhooks.fetch("http://app.test/slow", "POST", PARAMS)
    assert str(caught.value) == "request to http://app.test/slow failed: timed out after 2 s"


async def test_connection_refused(webhooks: Webhooks):
    # Port 1 on the loopback: nothing listens there, the kernel refuses at once.
    with pytest.raises(WebhookError) as caught:
        await webhooks.fetch("http://127.0.0.1:1/voice", "POST", PARAMS)
    assert caught.value.reason == "connection refused"


@respx.mock
async def test_invalid_xml_names_the_url_and_line(webhooks: Webhooks):
    respx.post("http://app.test/voice").respond(200, text="<Response>\n<Dial>\n</Response>")
    with pytest.raises(MarkupError) as caught:
        await webhooks.fetch("http://app.test/voice", "POST", PARAMS)
    assert (caught.value.source, caught.value.line) == ("http://app.test/voice", 3)


async def test_unsupported_scheme(webhooks: Webhooks):
    with pytest.raises(WebhookError, match="unsupported URL"):
        await webhooks.fetch("ftp://app.test/voice.xml", "POST", {})


async def test_given_client_is_used_and_left_open(apps: Path):
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=HANGUP)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        async with Webhooks(Settings(base_dir=apps.parent), client=client) as webhooks:
            assert (await webhooks.fetch("http://app.test/v", "POST", {})).verbs == (Hangup(),)
        assert not client.is_closed


async def test_transport_seam(apps: Path):
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=HANGUP)

    async with Webhooks(Settings(base_dir=apps.parent), transport=httpx.MockTransport(answer)) as webhooks:
        await webhooks.fetch("http://app.test/v", "POST", {"From": "alice"})
    assert form(seen[0]) == {"From": ["alice"]}
    assert seen[0].headers["user-agent"].startswith("stasis-rcml/")


async def test_app_file_with_placeholders(webhooks: Webhooks, apps: Path):
    (apps / "refer.xml").write_text(
        '<Response>\n  <Dial callerId="$core_From"><Number>$core_ReferTarget</Number></Dial>\n</Response>\n'
    )
    document = await webhooks.fetch("app:refer", "POST", {"From": "alice", "ReferTarget": "1002"})
    assert document == Document(verbs=(Dial(nouns=(Number(number="1002"),), caller_id="alice"),), source="app:refer")


async def test_app_substitution_is_xml_escaped_in_text_and_attributes(webhooks: Webhooks, apps: Path):
    (apps / "echo.xml").write_text(
        "<Response><Dial callerId='$core_From' action=\"$core_From\"><Client>$core_From</Client></Dial></Response>"
    )
    hostile = 'a<b&"c"\'</Client><Hangup/>'
    document = await webhooks.fetch("app:echo", "GET", {"From": hostile})
    assert document.verbs == (Dial(nouns=(Client(name=hostile),), caller_id=hostile, action=hostile),)


async def test_unknown_placeholder_is_empty_and_names_do_not_overlap(webhooks: Webhooks, apps: Path):
    (apps / "play.xml").write_text("<Response><Play>x$core_Nope$core_FromX-$core_From</Play></Response>")
    document = await webhooks.fetch("app:play", "POST", {"From": "alice"})
    assert document.verbs == (Play(media="sound:x-alice"),)


def test_placeholders_leave_other_dollars_alone():
    assert fill_placeholders("$5 $core_ $core_To", {"To": "1001"}) == "$5 $core_ 1001"


async def test_app_file_is_reread_when_it_changes(webhooks: Webhooks, apps: Path):
    app = apps / "live.xml"
    app.write_text(HANGUP)
    assert (await webhooks.fetch("app:live", "POST", {})).verbs == (Hangup(),)
    app.write_text("<Response><Redirect>app:other</Redirect></Response>")
    assert (await webhooks.fetch("app:live", "POST", {})).verbs == (Redirect(url="app:other"),)


async def test_an_unchanged_app_file_is_parsed_once_per_value_of_the_parameters_it_takes(
    webhooks: Webhooks, apps: Path
):
    (apps / "fixed.xml").write_text(HANGUP)
    first = await webhooks.fetch("app:fixed", "POST", {"From": "alice"})
    assert await webhooks.fetch("app:fixed", "POST", {"From": "bob"}) is first
    (apps / "refer.xml").write_text("<Response><Dial><Number>$core_ReferTarget</Number></Dial></Response>")
    to_1002 = await webhooks.fetch("app:refer", "POST", {"ReferTarget": "1002", "Transferor": "bob"})
    to_1003 = await webhooks.fetch("app:refer", "POST", {"ReferTarget": "1003", "Transferor": "bob"})
    assert (to_1002.verbs, to_1003.verbs) == (
        (Dial(nouns=(Number(number="1002"),)),),
        (Dial(nouns=(Number(number="1003"),)),),
    )
    # A parameter the document does not use makes no difference; one it uses does.
    assert await webhooks.fetch("app:refer", "POST", {"ReferTarget": "1002", "Transferor": "dave"}) is to_1002


async def test_a_placeholder_written_with_an_entity_is_filled_for_each_request(webhooks: Webhooks, apps: Path):
    # &#36; is "$": the placeholder only shows once the XML is parsed, so the text cannot say which values count.
    (apps / "hidden.xml").write_text("<Response><Dial><Number>&#36;core_ReferTarget</Number></Dial></Response>")
    for target in ("1002", "1003"):
        document = await webhooks.fetch("app:hidden", "POST", {"ReferTarget": target})
        assert document.verbs == (Dial(nouns=(Number(number=target),)),)


async def test_the_documents_kept_per_app_file_are_bounded(webhooks: Webhooks, apps: Path):
    (apps / "refer.xml").write_text("<Response><Dial><Number>$core_ReferTarget</Number></Dial></Response>")
    first = await webhooks.fetch("app:refer", "POST", {"ReferTarget": "2000"})
    for target in range(2001, 2001 + webhook_module._PARSED_PER_APP):
        await webhooks.fetch("app:refer", "POST", {"ReferTarget": str(target)})
    again = await webhooks.fetch("app:refer", "POST", {"ReferTarget": "2000"})
    assert again == first
    assert again is not first  # the oldest went to keep the bound


@pytest.mark.parametrize("relative", ["next.xml", "./next.xml", "/next.xml", "next", "app:next"])
async def test_relative_url_in_an_app_names_a_sibling_app(webhooks: Webhooks, apps: Path, relative: str):
    (apps / "next.xml").write_text(HANGUP)
    document = await webhooks.fetch(relative, "POST", {}, base="app:first")
    assert document.source == "app:next"


@pytest.mark.parametrize("url", ["app:../secret", "app:sub/x", "app:", "app:a..b", "app:%2e%2e"])
async def test_unsafe_app_name_is_refused(webhooks: Webhooks, url: str):
    with pytest.raises(WebhookError, match="plain file name"):
        await webhooks.fetch(url, "POST", {})


async def test_relative_path_out_of_the_apps_folder_is_refused(webhooks: Webhooks):
    with pytest.raises(WebhookError, match="plain file name"):
        await webhooks.fetch("../secret.xml", "POST", {}, base="app:first")


async def test_missing_app_file(webhooks: Webhooks, apps: Path):
    with pytest.raises(WebhookError) as caught:
        await webhooks.fetch("app:nope", "POST", {})
    assert str(caught.value) == f"request to app:nope failed: no such app file {apps / 'nope.xml'}"


async def test_invalid_app_names_the_app(webhooks: Webhooks, apps: Path):
    (apps / "bad.xml").write_text('<Response>\n<Pause length="x"/>\n</Response>')
    with pytest.raises(MarkupError) as caught:
        await webhooks.fetch("app:bad", "POST", {})
    assert str(caught.value).startswith('invalid RCML from app:bad, line 2: <Pause> length="x"')


def test_resolve_url_keeps_absolute_urls():
    assert resolve_url("app:x", "http://app.test/") == "app:x"
    assert resolve_url("https://a.test/x") == "https://a.test/x"


async def test_shipped_refer_app_takes_a_target_with_a_double_dash():
    # examples/apps/refer.xml names $core_ReferTarget in a comment: "--" there once broke the document.
    settings = Settings(base_dir=Path(__file__).parent.parent / "examples")
    async with Webhooks(settings) as webhooks:
        document = await webhooks.fetch("app:refer", "POST", {"ReferTarget": "a--b", "From": "alice"})
    assert document.verbs == (Dial(nouns=(Number(number="a--b"),)),)


async def test_warm_up_makes_one_loopback_request_and_never_raises(tmp_path):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        raise httpx.ConnectError("refused")

    async with Webhooks(Settings(base_dir=tmp_path), transport=httpx.MockTransport(handler)) as webhooks:
        await webhooks.warm_up()
    assert len(seen) == 1
    assert seen[0].startswith("http://127.0.0.1:")
