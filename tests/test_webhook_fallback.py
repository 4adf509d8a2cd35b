"""A number's Voice Fallback URL: requested, with ErrorCode and ErrorUrl, when its Voice URL fails."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import parse_qs

import httpx
import pytest

from models.config import NumberConfig, Settings
from models.rcml import Hangup, Play
from stasis_app.config import check_settings
from stasis_app.errors import MarkupError, WebhookError
from stasis_app.webhook import Webhooks

PARAMS = {"CallSid": "CA1", "From": "alice", "To": "1001"}
FALLBACK = "<Response><Play>sorry</Play></Response>"


class App:
    """A fake customer web app: a document (or a status) per path, and every request it got."""

    def __init__(self, answers: dict[str, str | int]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers.get(request.url.path, 404)
        return httpx.Response(answer) if isinstance(answer, int) else httpx.Response(200, text=answer)

    def form(self, index: int) -> dict[str, str]:
        request = self.requests[index]
        query = request.content.decode() if request.method == "POST" else request.url.query.decode()
        return {name: values[0] for name, values in parse_qs(query).items()}


async def voice(tmp_path: Path, app: App, number: NumberConfig):
    async with Webhooks(Settings(base_dir=tmp_path), transport=httpx.MockTransport(app)) as webhooks:
        return await webhooks.fetch_voice(number, PARAMS)


def number(**urls: str) -> NumberConfig:
    return NumberConfig.model_validate({"number": "1001", "voice_url": "http://app.test/voice", **urls})


async def test_voice_url_that_works_is_the_only_request(tmp_path: Path):
    app = App({"/voice": "<Response><Hangup/></Response>", "/fallback": FALLBACK})
    document = await voice(tmp_path, app, number(voice_fallback_url="http://app.test/fallback"))
    assert document.verbs == (Hangup(),)
    assert [request.url.path for request in app.requests] == ["/voice"]


async def test_failed_fetch_goes_to_the_fallback_with_error_code_11200(tmp_path: Path, caplog):
    app = App({"/voice": 500, "/fallback": FALLBACK})
    with caplog.at_level(logging.WARNING):
        document = await voice(tmp_path, app, number(voice_fallback_url="http://app.test/fallback"))
    assert document.verbs == (Play(media="sound:sorry"),)
    assert document.source == "http://app.test/fallback"
    assert app.form(1) == {**PARAMS, "ErrorCode": "11200", "ErrorUrl": "http://app.test/voice"}
    (warning,) = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert warning == ("number 1001: request to http://app.test/voice failed: HTTP 500; trying its Voice Fallback URL")


async def test_invalid_rcml_goes_to_the_fallback_with_error_code_12100(tmp_path: Path):
    app = App({"/voice": "<Response><Speak>hi</Speak></Response>", "/fallback": FALLBACK})
    await voice(tmp_path, app, number(voice_fallback_url="http://app.test/fallback", voice_fallback_method="get"))
    assert app.requests[1].method == "GET"
    assert app.form(1)["ErrorCode"] == "12100"


async def test_the_failed_urls_password_is_not_sent_to_the_fallback(tmp_path: Path):
    app = App({"/voice": 503, "/fallback": FALLBACK})
    await voice(
        tmp_path,
        app,
        number(voice_url="http://u:secret@app.test/voice", voice_fallback_url="http://other.test/fallback"),
    )
    assert app.form(1)["ErrorUrl"] == "http://***@app.test/voice"


async def test_without_a_fallback_the_voice_urls_error_is_raised(tmp_path: Path):
    with pytest.raises(WebhookError, match=r"^request to http://app\.test/voice failed: HTTP 500$"):
        await voice(tmp_path, App({"/voice": 500}), number())
    with pytest.raises(MarkupError):
        await voice(tmp_path, App({"/voice": "<Nope/>"}), number())


async def test_when_both_fail_the_fallbacks_error_is_raised(tmp_path: Path):
    app = App({"/voice": 500, "/fallback": 502})
    with pytest.raises(WebhookError, match=r"^request to http://app\.test/fallback failed: HTTP 502$"):
        await voice(tmp_path, app, number(voice_fallback_url="http://app.test/fallback"))


async def test_the_fallback_can_be_a_local_app(tmp_path: Path):
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "sorry.xml").write_text("<Response><Play>$core_ErrorCode</Play></Response>")
    document = await voice(tmp_path, App({"/voice": 500}), number(voice_fallback_url="app:sorry"))
    assert document.verbs == (Play(media="sound:11200"),)


def test_fallback_url_is_checked_like_the_voice_url():
    with pytest.raises(ValueError, match="must be http://, https:// or app:NAME"):
        number(voice_fallback_url="ftp://app.test/x")
    assert number().voice_fallback_url is None


def test_check_reports_a_missing_local_fallback_app(tmp_path: Path):
    (tmp_path / "apps").mkdir()
    settings = Settings(base_dir=tmp_path, numbers=(number(voice_fallback_url="app:sorry"),))
    assert check_settings(settings) == [
        f"numbers[0].voice_fallback_url: app:sorry: no such app file {tmp_path / 'apps' / 'sorry.xml'}"
    ]
