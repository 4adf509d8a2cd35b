"""What a verb sees of the call it runs on: a narrow :class:`CallContext`, and the preconditions it declares.

Verbs do not reach into the session: they ask the context (answer, originate, join the bridge, play, fetch a
document, listen to a leg's events) and return an :mod:`~stasis_app.outcomes` value. The session satisfies a
verb's :class:`Needs` once before running it, so no verb answers the call by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import Protocol, TypeVar

from models.config import NumberConfig, Settings
from models.rcml import Document, HttpMethod, Verb
from stasis_app.bridges import Bridge
from stasis_app.conference import Conferences
from stasis_app.legs import CallLeg, Party
from stasis_app.media import MediaService, Played
from stasis_app.outcomes import DialWatcher, Outcome
from stasis_app.transfer import Connection

__all__ = ["CallContext", "Needs", "VerbExecutor"]


class Needs(Enum):
    """A verb's precondition, satisfied by the session before the verb runs."""

    NOTHING = "nothing"  # Dial, Redirect, Hangup, Reject: they decide about answering themselves
    ANSWERED = "answered"  # media verbs (Play, Pause...): the caller is answered first


class CallContext(Protocol):
    """The call a verb runs on."""

    @property
    def caller(self) -> CallLeg:
        """The leg this document runs for (the caller, or the callee a transfer runs on)."""

    @property
    def number(self) -> NumberConfig:
        """Our number the call is on."""

    @property
    def settings(self) -> Settings: ...

    @property
    def document_url(self) -> str:
        """Where the running document came from (``http(s)://...`` or ``app:NAME``): relative URLs resolve
        against it."""

    @property
    def media(self) -> MediaService:
        """Speech rendering and the URLs media verbs give Asterisk."""

    async def answer(self) -> None:
        """Answer the caller if nobody has yet."""

    async def ring(self) -> None:
        """Let the caller hear ringing: 180 before the answer, an in-band tone after (stopped by the next verb)."""

    async def stop_ringing(self) -> None: ...

    def new_leg(self, endpoint: str, party: Party) -> CallLeg:
        """A leg this call will dial, registered before the originate (its first events may come first)."""

    def dial_ours(self, number: NumberConfig, party: Party) -> CallLeg:
        """Ring one of our own numbers in-process: its app runs as a call of its own (its CallSid, webhooks and
        Dial action), its callee joins this call's bridge, its media verbs play to this call's caller. The
        returned leg answers when that app answers and ends when that call ends, with its cause."""

    async def originate(
        self, leg: CallLeg, endpoint: str, caller_id: str, timeout: int, variables: dict[str, str] | None = None
    ) -> bool:
        """Dial ``leg``; False (one log line, the leg ended) if Asterisk refuses."""

    async def hang_up(self, leg: CallLeg) -> None:
        """Hang up a leg this call dialed (once; a leg already gone is fine)."""

    async def bridge(self) -> Bridge:
        """The call's mixing bridge, created on first use."""

    async def answer_and_join(self, *legs: CallLeg, first: Callable[[], Awaitable[None]] | None = None) -> None:
        """``first`` (one request at most, sent before it awaits anything), :meth:`answer`, then ``legs`` into the
        call's bridge in one request (CallGone if one is gone: then none is in): one round trip for them all where
        Asterisk keeps the order of requests; the earliest error if any fails (AriError: Asterisk refused)."""

    def has_media(self) -> bool:
        """Whether a channel carries the caller's audio (not so for the far end of one of our numbers run
        in-process, once its caller transferred away)."""

    async def play(self, media: str) -> bool:
        """Play media to the caller until it ends; False if the caller hung up first."""

    async def play_media(self, media: str) -> Played:
        """Play media to the caller until it ends, and say how it ended (finished, failed, caller gone)."""

    async def send_digits(self, digits: str) -> None:
        """Send DTMF to the caller (``w``: a half-second pause) and return once Asterisk has sent it."""

    async def fetch(self, url: str, method: HttpMethod, extra: Mapping[str, str] | None = None) -> Document:
        """Request an application URL with this call's parameters (plus ``extra``), relative to the document."""

    def notify(self, url: str, method: HttpMethod, extra: Mapping[str, str]) -> None:
        """Fire-and-forget: request a status callback URL with this call's parameters (plus ``extra``) in the
        background, ignoring its answer; the call never waits for it, a failure is one log line."""

    async def start_recording(self, name: str, *, max_duration: int, max_silence: int, beep: bool) -> None:
        """Start recording the caller into the stored recording ``name`` (taking it out of a bridge first: a
        bridged channel cannot be recorded); its end comes as a leg event. CallGone / AriError if refused."""

    async def record_bridge(self, bridge: Bridge, name: str, max_duration: int) -> None:
        """Record everyone in ``bridge`` into the stored recording ``name`` (``Bridge.recording`` says when it
        ended). CallGone / AriError if refused."""

    async def send_digits_to(self, leg: CallLeg, digits: str) -> None:
        """Send DTMF to a leg this call dialed and return once Asterisk has sent it."""

    async def stop_recording(self, name: str) -> None:
        """End a live recording now, keeping what it has (CallGone if it is over already)."""

    async def recording_kept(self, name: str) -> bool:
        """Whether Asterisk holds the stored recording ``name`` (False when it cannot say)."""

    def connect(self, peer: CallLeg, bridge: Bridge, refer: tuple[str, HttpMethod] | None = None) -> Connection:
        """The caller and ``peer`` are talking in ``bridge``: REFERs on the call go to the returned object, and
        request ``refer`` (the Dial's ``referUrl``, relative to the document) instead of the number's Refer URL."""

    def dial_watcher(self) -> DialWatcher | None:
        """Who wants to know how this document's first Dial goes (once: the next call returns None)."""

    def let_go(self, leg: CallLeg) -> None:
        """A transfer took ``leg`` over: the call no longer hangs it up when it ends."""

    async def whisper(self, leg: CallLeg, url: str, method: HttpMethod) -> str | None:
        """Run a Dial noun's ``url`` on ``leg``, answered and not bridged yet: None to connect it, else the
        ``DialCallStatus`` the Dial goes on with (``no-answer`` when it hung up, ``failed``)."""

    def dial_ended(self, status: str) -> None:
        """A Dial ended with ``status``: if the document then ends unanswered, the call ends with its cause."""

    # -- Conference and Sms -----------------------------------------------------------------------------------

    @property
    def conferences(self) -> Conferences:
        """The application's conference rooms (shared by every call)."""

    def params(self) -> dict[str, str]:
        """This call's standard request parameters (``CallSid``, ``From``, ``To``...)."""

    def absolute(self, url: str) -> str:
        """An application URL relative to the running document, made absolute (as written if it cannot be)."""

    def post(self, url: str, method: HttpMethod, extra: Mapping[str, str]) -> None:
        """A status callback: ``url`` requested with this call's parameters plus ``extra``, fire and forget."""

    async def send_message(self, to: str, from_: str, body: str) -> None:
        """An out-of-call message through Asterisk (``to``: ``pjsip:bob``); AriError if Asterisk refuses it."""


V_contra = TypeVar("V_contra", bound=Verb, contravariant=True)


class VerbExecutor(Protocol[V_contra]):
    """Runs one verb on a call and says what happens next."""

    needs: Needs

    async def execute(self, call: CallContext, verb: V_contra) -> Outcome: ...
