"""Media for ``<Play>`` and ``<Say>``: what Asterisk is asked to play, and how a playback ends.

* Asterisk media (``sound:``, ``tone:``, ``recording:``, ``digits:``...) are played as written.
* ``http(s)://`` URLs go through Asterisk's HTTP media cache (``res_http_media_cache``) as ``sound:<url>``:
  Asterisk 22 answers a bare ``http://`` media with 201 and ``PlaybackStarted``, logs "scheme is unsupported",
  and never sends ``PlaybackFinished``: the call would wait forever.
* A relative URL resolves against the document's URL; for an ``app:`` document, against the apps folder
  served by the app's own HTTP side (``<base_url>/apps/<file>``: one plain file name, no folders).
* ``<Say>`` speech is rendered by :class:`~stasis_app.tts.SpeechCache` and played from
  ``<base_url>/tts/<key>.wav``.

A playback that fails (a 404, a refused connection, a file Asterisk cannot read) ends on Asterisk 22.10.1 with
``PlaybackFinished`` whose state is ``failed``: :func:`play_to` says :attr:`Played.FAILED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from enum import Enum
from urllib.parse import urljoin, urlsplit

from models.ari import PlaybackFinished
from models.config import Settings
from stasis_app.ari.protocol import AsteriskApi
from stasis_app.errors import AriError, CallGone, StasisRcmlError
from stasis_app.legs import CallLeg
from stasis_app.redact import redact_url
from stasis_app.tts import EspeakEngine, SpeechCache, TtsEngine

__all__ = ["MediaError", "MediaService", "Played", "dtmf_seconds", "play_to", "safe_media_name"]

log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_HTTP = ("http://", "https://")
# A file of the apps folder that may be served: a plain name with an audio extension (never the RCML files).
_MEDIA_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.(wav|wav16|gsm|ulaw|alaw|ul|al|sln|sln16|g722|mp3)", re.I)


class MediaError(StasisRcmlError):
    """A ``<Play>`` URL that cannot be played from here (a relative URL without a usable base, a bad name)."""


class Played(Enum):
    """How one playback ended."""

    FINISHED = "finished"  # played to the end (or stopped)
    FAILED = "failed"  # Asterisk could not play it (PlaybackFinished with state "failed")
    CALLER_GONE = "caller-gone"  # the channel hung up first


def dtmf_seconds(digits: str) -> float:
    """How long Asterisk takes to send ``digits`` with ARI's defaults (100 ms a tone, 100 ms between)."""
    return sum(0.5 if digit == "w" else 1.0 if digit == "W" else 0.2 for digit in digits)


def safe_media_name(name: str) -> bool:
    """Whether ``name`` is a file of the apps folder that the HTTP side may serve (no path, an audio file)."""
    return _MEDIA_NAME.fullmatch(name) is not None and ".." not in name


class MediaService:
    """What media verbs need beyond Asterisk: the speech cache and the URL Asterisk reaches our HTTP side at.

    ``base_url`` is ``[http]``'s; the HTTP side sets it to the address it really got when the port was 0.
    """

    def __init__(self, settings: Settings, engine: TtsEngine | None = None) -> None:
        self.base_url = settings.http.base_url
        self.speech = SpeechCache(settings.tts_path, engine or EspeakEngine(timeout=settings.tts.timeout))

    async def speech_media(self, text: str, voice: str, language: str) -> str:
        """The Asterisk media of this speech, rendered first if needed (:class:`~stasis_app.tts.TtsError`)."""
        key = await self.speech.render(text, voice, language)
        return f"sound:{self.base_url}/tts/{key}.wav"

    def play_media(self, media: str, document_url: str) -> str:
        """The Asterisk media for a ``<Play>`` text: a relative URL resolved against ``document_url``."""
        if media.startswith(_HTTP):
            return f"sound:{media}"
        if _SCHEME.match(media):
            return media  # sound:, tone:, recording:, digits:...: Asterisk's own
        if document_url.startswith(_HTTP):
            try:
                return f"sound:{urljoin(document_url, media)}"
            except ValueError as exc:
                where = redact_url(document_url)
                raise MediaError(f"<Play> {media!r}: cannot resolve against {where}: {exc}") from None
        if document_url.startswith("app:"):
            name = urlsplit(media).path.removeprefix("./").removeprefix("/")
            if not safe_media_name(name):
                raise MediaError(
                    f"<Play> {media!r} in {document_url}: the apps folder serves plain audio file names only "
                    "(name.wav, no folders)"
                )
            return f"sound:{self.base_url}/apps/{name}"
        raise MediaError(f"<Play> {media!r}: a relative URL outside any document")


async def play_to(ari: AsteriskApi, leg: CallLeg, media: str, playback_id: str) -> Played:
    """Play ``media`` on ``leg`` (a channel) and wait until it ends; :class:`CallGone` if the channel is gone."""
    with leg.listen() as events:
        try:
            await ari.play(leg.id, media, playback_id)
        except CallGone:
            raise
        except AriError as exc:  # Asterisk refused the media outright: the same to the verb as a failed playback
            log.info("play %s on %s refused: %s", redact_url(media), leg.name, exc.reason)
            return Played.FAILED
        try:
            while (finished := await events.next(PlaybackFinished)) is not None:
                if finished.playback.id == playback_id:
                    return Played.FAILED if finished.playback.state == "failed" else Played.FINISHED
        except asyncio.CancelledError:
            # Interrupted (a key press in a Gather): the caller must not go on hearing it.
            with contextlib.suppress(AriError):
                await ari.stop_playback(playback_id)
            raise
    return Played.CALLER_GONE
