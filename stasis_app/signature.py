"""``X-Twilio-Signature``: how an application can tell that a request really comes from this server.

The algorithm is Twilio's, so the customer's app can check it with Twilio's own helper libraries
(``RequestValidator(auth_token).validate(url, params, signature)``):

1. take the full URL of the request, query string included (as the app sees it: without any
   ``user:password@``, which travels as an ``Authorization`` header);
2. for a form POST, append each parameter name followed by its value, sorted by name;
3. HMAC-SHA1 that string, keyed by the auth token (``[webhooks] auth_token`` or ``WEBHOOK_AUTH_TOKEN``),
   and base64 the digest.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

import httpx

__all__ = ["SIGNATURE_HEADER", "sign_request", "twilio_signature"]

SIGNATURE_HEADER = "X-Twilio-Signature"


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The signature of a request to ``url``; ``params`` are the POST form fields (None for a GET)."""
    payload = url + "".join(f"{name}{params[name]}" for name in sorted(params)) if params else url
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_request(request: httpx.Request, auth_token: str, params: Mapping[str, str] | None) -> None:
    """Set (or replace) the request's signature header; ``params`` as for :func:`twilio_signature`."""
    url = str(request.url.copy_with(username=None, password=None)) if request.url.userinfo else str(request.url)
    request.headers[SIGNATURE_HEADER] = twilio_signature(auth_token, url, params)
