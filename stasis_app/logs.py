"""The call sid on every log line of a call, from a context variable rather than formatted into each message.

Convention: every module logs through ``log = logging.getLogger(__name__)`` (so all names are under
``stasis_app.``). A session's task runs with :data:`CALL_SID` set, and tasks it starts inherit it; code that acts
for a call outside that task (event handling, a transfer) sets it with :func:`for_call`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

__all__ = ["CALL_SID", "FORMAT", "CallSidFilter", "for_call", "install"]

CALL_SID: ContextVar[str] = ContextVar("call_sid", default="")

FORMAT = "%(asctime)s %(levelname)s %(name)s%(call)s: %(message)s"


class CallSidFilter(logging.Filter):
    """Adds ``record.call`` (`` [CA...]`` or empty) for :data:`FORMAT`; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        sid = CALL_SID.get()
        record.call = f" [{sid}]" if sid else ""
        return True


@contextlib.contextmanager
def for_call(call_sid: str) -> Iterator[None]:
    """Log as ``call_sid`` inside the block (for work done outside the call's own task)."""
    token = CALL_SID.set(call_sid)
    try:
        yield
    finally:
        CALL_SID.reset(token)


def install(level: int | str) -> None:
    """Configure the root logger like ``logging.basicConfig``: :data:`FORMAT` on stderr with the call sid filter
    on the handler, unless the host (a test runner, an embedding program) configured logging already."""
    root = logging.getLogger()
    if root.handlers:
        return
    # FORMAT shows none of these: skip looking them up for every record. _srcfile = None is the logging HOWTO's
    # own switch for the caller's file and line: without it every record walks the stack to find them.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(CallSidFilter())
    root.addHandler(handler)
    root.setLevel(level)
