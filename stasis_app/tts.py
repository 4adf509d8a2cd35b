"""Text to speech for ``<Say>``: a pluggable :class:`TtsEngine`, the espeak-ng one, and the on-disk cache.

An engine turns (text, voice, language) into a WAV file Asterisk can play as is: 8 kHz, mono, 16-bit PCM
(``format_wav`` reads nothing else under ``.wav``). :class:`SpeechCache` keeps one file per hash of
(engine, voice, language, text), renders each at most once at a time, and writes it atomically, so Asterisk
never fetches half a file. Rendering runs in child processes: the event loop never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from stasis_app.errors import StasisRcmlError

__all__ = ["KEY", "EspeakEngine", "SpeechCache", "TtsEngine", "TtsError"]

log = logging.getLogger(__name__)

KEY = re.compile(r"[0-9a-f]{64}")
"""What a rendered file's name (without ``.wav``) looks like: a SHA-256 in hex."""

_SHOWN = 40  # characters of the text quoted in an error


class TtsError(StasisRcmlError):
    """Speech could not be rendered or stored (engine missing or failing, a full disk): the Say is skipped."""


class TtsEngine(Protocol):
    """Renders speech. ``name`` (and ``version``, when the sound changes with it) goes into the cache key."""

    name: str

    async def render(self, text: str, voice: str, language: str, dest: Path) -> None:
        """Write ``text`` spoken in ``voice`` (``man``, ``woman``, ``alice``, or an engine's own name) and
        ``language`` (``en``, ``en-US``, ``fr-FR``...) to ``dest`` as 8 kHz mono 16-bit WAV. Raises
        :class:`TtsError` with a one-line reason."""


# Twilio's voices as espeak-ng variants; any other voice name is taken as a variant if espeak-ng has one.
_VARIANTS = {"man": "m3", "woman": "f3", "alice": "f2"}
# Language tags whose espeak-ng name is not the tag itself or its first subtag.
_LANGUAGE_ALIASES = {
    "en": "en-us",  # Twilio's "en" is American English; espeak-ng's "en" is British
    "en-au": "en-gb",
    "en-ca": "en-us",
    "en-in": "en-gb",
    "es-mx": "es-419",
    "es-us": "es-419",
    "fr-ca": "fr",
    "zh": "cmn",
    "zh-cn": "cmn",
    "zh-tw": "cmn",
    "zh-hk": "yue",
    "nb": "nb",
    "no": "nb",
}


class EspeakEngine:
    """espeak-ng (formant synthesis, Debian's ``espeak-ng``) resampled to 8 kHz by sox (Debian's ``sox``).

    espeak-ng writes 22,050 Hz; sox's resampler is a band-limited one (no aliasing into the telephone band) and
    costs a few milliseconds a file. Both are child processes, so nothing here blocks the event loop.
    """

    name = "espeak-ng"

    def __init__(self, *, timeout: float = 20.0, espeak: str = "espeak-ng", sox: str = "sox") -> None:
        self.timeout = timeout
        self._espeak = espeak
        self._sox = sox
        self._languages: frozenset[str] | None = None
        self._variants: frozenset[str] | None = None

    async def render(self, text: str, voice: str, language: str, dest: Path) -> None:
        """Render with espeak-ng, then resample with sox into ``dest`` (see :class:`TtsEngine`)."""
        for tool in (self._espeak, self._sox):
            if shutil.which(tool) is None:
                raise TtsError(f"{tool} is not installed (apt-get install espeak-ng sox)")
        espeak_voice = await self.voice_for(voice, language)
        wide = dest.with_name(dest.name + ".22k.wav")
        try:
            await self._run([self._espeak, "-v", espeak_voice, "-w", str(wide), "--stdin"], text.encode())
            await self._run(
                [self._sox, "-q", str(wide), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(dest)]
            )
        finally:
            with contextlib.suppress(OSError):
                wide.unlink()

    async def voice_for(self, voice: str, language: str) -> str:
        """The espeak-ng voice (``language+variant``) for a Twilio ``voice`` and ``language``."""
        if self._languages is None or self._variants is None:
            self._languages = await self._list("--voices")
            self._variants = await self._list("--voices=variant", column=4)
        tag = language.lower()
        primary = tag.split("-")[0]
        candidates = (_LANGUAGE_ALIASES.get(tag), tag, _LANGUAGE_ALIASES.get(primary), primary)
        chosen = next((name for name in candidates if name and name in self._languages), None)
        if chosen is None:  # espeak-ng has only regional ones for some languages ("fr" is "fr-fr", "fr-be"...)
            regional = sorted(name for name in self._languages if name.startswith(f"{primary}-"))
            home = f"{primary}-{primary}"  # the language of its home country first: fr-fr, not fr-be
            chosen = home if home in regional else (regional[0] if regional else None)
        if chosen is None:
            log.warning('<Say> language="%s": espeak-ng has no such language; speaking American English', language)
            chosen = "en-us"
        variant = _VARIANTS.get(voice.lower(), voice.lower())
        return f"{chosen}+{variant}" if variant in self._variants else chosen

    async def _list(self, option: str, column: int = 1) -> frozenset[str]:
        """One column of ``espeak-ng --voices``: the languages, or (``--voices=variant``) the variant files."""
        out = await self._run([self._espeak, option])
        names = set()
        for line in out.decode(errors="replace").splitlines()[1:]:
            fields = line.split()
            if len(fields) > column:
                names.add(fields[column].lower().removeprefix("!v/"))
        return frozenset(names)

    async def _run(self, argv: list[str], stdin: bytes | None = None) -> bytes:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise TtsError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), self.timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise TtsError(f"{argv[0]} took more than {self.timeout:g} s") from None
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            why = " ".join(err.decode(errors="replace").split())[:200] or f"exit status {proc.returncode}"
            raise TtsError(f"{argv[0]} failed: {why}")
        return out


class SpeechCache:
    """Rendered speech on disk: ``<folder>/<sha256>.wav`` per (engine, voice, language, text)."""

    def __init__(self, folder: Path, engine: TtsEngine) -> None:
        self.folder = folder
        self.engine = engine
        self._rendering: dict[str, asyncio.Future[None]] = {}

    def key(self, text: str, voice: str, language: str) -> str:
        """The file name (without ``.wav``) of this speech."""
        version = getattr(self.engine, "version", "")
        fields = (self.engine.name, str(version), voice.lower(), language.lower(), text)
        return hashlib.sha256("\0".join(fields).encode()).hexdigest()

    def path(self, key: str) -> Path:
        """Where the file of ``key`` is (or will be)."""
        return self.folder / f"{key}.wav"

    async def render(self, text: str, voice: str, language: str) -> str:
        """The key of this speech, rendered first unless on disk already; :class:`TtsError` if it cannot be."""
        key = self.key(text, voice, language)
        if self.path(key).is_file():
            return key
        running = self._rendering.get(key)
        if running is None:  # one rendering per key: a second caller waits for the first
            running = asyncio.ensure_future(self._render(key, text, voice, language))
            self._rendering[key] = running
            running.add_done_callback(lambda _done: self._rendering.pop(key, None))
        await asyncio.shield(running)
        return key

    async def _render(self, key: str, text: str, voice: str, language: str) -> None:
        tmp = await asyncio.to_thread(self._new_file, key)
        try:
            await self.engine.render(text, voice, language, tmp)
            await asyncio.to_thread(self._keep, tmp, key, text)
        finally:
            await asyncio.to_thread(_discard, tmp)

    def _new_file(self, key: str) -> Path:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{key[:16]}-", suffix=".wav", dir=self.folder)
            os.close(fd)
        except OSError as exc:
            raise TtsError(f"cannot write speech to {self.folder}: {exc.strerror or exc}") from None
        return Path(name)

    def _keep(self, tmp: Path, key: str, text: str) -> None:
        shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "..."
        try:
            if tmp.stat().st_size <= 44:  # a WAV header and no audio: a full disk, or an engine that said nothing
                raise TtsError(f"{self.engine.name} wrote no audio for {shown!r} (disk full?)")
            tmp.replace(self.path(key))  # atomic: Asterisk never reads half a file
        except OSError as exc:
            raise TtsError(f"cannot write speech to {self.folder}: {exc.strerror or exc}") from None


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
