"""X-Twilio-Signature on every request to an application URL, checked as the customer's server would."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from models.config import Settings, WebhookSettings
from models.rcml import Hangup
from stasis_app.config import load_settings
from stasis_app.signature import twilio_signature
from stasis_app.webhook import Webhooks

TOKEN = "f3b2c1d0e9a8b7c6d5e4f3a2b1c0d9e8"
HANGUP = "<Response><Hangup/></Response>"
PARAMS = {"CallSid": "CA1", "From": "+15551234", "To": "1001", "AccountSid": "AC1", "Caller": "alice"}


def verify(token: str, request: httpx.Request) -> bool:
    """What the customer's server does, from the request as received (written apart from the app's code)."""
    # Scheme, Host header and request target: a user:password@ in the app's URL never reaches the server.
    signed = f"{request.url.scheme}://{request.headers['Host']}{request.url.raw_path.decode()}"
    if request.method == "POST":
        fields = parse_qsl(request.content.decode(), keep_blank_values=True)
        for name, value in sorted(fields):
            signed += name + value
    mac = hmac.new(token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    expected = base64.b64encode(mac.digest()).decode()
    return hmac.compare_digest(expected, request.headers.get("X-Twilio-Signature", ""))


def test_twilio_documentation_example():
    # The worked example of Twilio's request-validation documentation.
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def fetch(url: str, method, *, token: str | None = TOKEN, answer=None) -> list[httpx.Request]:
    seen: list[httpx.Request] = []

    def default(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=HANGUP)

    def record(request: httpx.Request) -> httpx.Response:
        request.read()
        seen.append(request)
        return (answer or default)(request)

    settings = Settings(base_dir=Path("."), webhooks=WebhookSettings(auth_token=token))
    async with Webhooks(settings, transport=httpx.MockTransport(record)) as webhooks:
        assert (await webhooks.fetch(url, method, PARAMS)).verbs == (Hangup(),)
    return seen


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    "url",
    [
        "https://app.test/voice",
        "https://app.test/voice?lang=fr&x=a%20b",
        "http://app.test:8080/v",
        "https://u:p@app.test/v",
    ],
)
async def test_every_request_is_signed(url: str, method):
    (request,) = await fetch(url, method)
    assert verify(TOKEN, request)
    assert not verify("another token", request)


async def test_a_tampered_parameter_breaks_the_signature():
    (request,) = await fetch("https://app.test/voice", "POST")
    forged = httpx.Request(
        "POST", request.url, headers=request.headers, content=request.content.replace(b"alice", b"mallory")
    )
    assert not verify(TOKEN, forged)


@pytest.mark.parametrize(("status", "method"), [(307, "POST"), (302, "GET"), (303, "GET")])
async def test_each_redirect_hop_is_signed_for_its_own_url(status: int, method: str):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/old":
            return httpx.Response(status, headers={"Location": "https://other.test/new?n=1"})
        return httpx.Response(200, text=HANGUP)

    first, second = await fetch("https://app.test/old", "POST", answer=answer)
    assert (second.method, str(second.url)) == (method, "https://other.test/new?n=1")
    assert verify(TOKEN, first)
    assert verify(TOKEN, second)


async def test_without_an_auth_token_nothing_is_signed():
    (request,) = await fetch("https://app.test/voice", "POST", token=None)
    assert "X-Twilio-Signature" not in request.headers


def test_the_auth_token_can_come_from_the_environment(tmp_path: Path):
    config = tmp_path / "config.toml"
    config.write_text('[webhooks]\nauth_token = "from-file"\n')
    assert load_settings(config, environ={}).webhooks.auth_token == "from-file"
    assert load_settings(config, environ={"WEBHOOK_AUTH_TOKEN": "from-env"}).webhooks.auth_token == "from-env"
