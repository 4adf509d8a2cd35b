"""The ``stasis-rcml`` command: ``run`` the Stasis app, or ``check`` a configuration and its apps.

    stasis-rcml run --config config.toml [--log-level DEBUG] [--event-log events.jsonl]
    stasis-rcml check --config config.toml

A problem the user can fix is printed as one line (``stasis-rcml: <message>``) and the exit status
is 1; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from stasis_app import __version__, logs
from stasis_app.config import ConfigProblems, check_settings, load_settings, local_apps
from stasis_app.errors import ConfigError, StasisRcmlError
from stasis_app.redact import redact_url
from stasis_app.safety import refuse_unsafe, startup_warnings

__all__ = ["main"]

log = logging.getLogger(__name__)

_PROG = "stasis-rcml"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 a reported problem, 2 bad usage)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version or a usage error: argparse already printed it
        return exc.code if isinstance(exc.code, int) else 2
    logs.install(args.log_level)
    try:
        if args.command == "check":
            return _check(args.config)
        return _run(args.config, args.event_log)
    except StasisRcmlError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=Path("config.toml"), metavar="PATH", help="default: config.toml")
    common.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="default: INFO",
    )
    parser = argparse.ArgumentParser(prog=_PROG, description="Run Restcomm-style RCML voice apps on Asterisk.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", parents=[common], help="connect to Asterisk and run the numbers' apps")
    run.add_argument(
        "--event-log",
        type=Path,
        metavar="FILE",
        help='append every ARI websocket message to FILE, one JSON line each: {"ts": ..., "event": {...}}',
    )
    commands.add_parser("check", parents=[common], help="check the configuration and every local app")
    return parser


def _check(config: Path) -> int:
    try:
        settings = load_settings(config)
    except ConfigProblems as exc:
        return _report(list(exc.problems))
    except ConfigError as exc:
        return _report([str(exc)])
    document_warnings: list[str] = []
    problems = check_settings(settings, document_warnings)
    try:
        refuse_unsafe(settings)
    except ConfigError as exc:
        problems.append(str(exc))
    for warning in document_warnings:
        print(f"{_PROG}: warning: {warning}", file=sys.stderr)
    if problems:
        return _report(problems)
    for warning in startup_warnings(settings):
        print(f"{_PROG}: warning: {warning}", file=sys.stderr)
    print(f"ok: {len(settings.numbers)} numbers, {len(local_apps(settings))} local apps")
    return 0


def _report(problems: list[str]) -> int:
    for problem in problems:
        print(f"{_PROG}: {problem}", file=sys.stderr)
    return 1


def _run(config: Path, event_log: Path | None = None) -> int:
    settings = load_settings(config)
    # Imported here: the engine (and its ARI client) is not needed to check a configuration.
    from stasis_app.app import run_app

    ari = settings.ari
    url = redact_url(ari.url)
    log.info("stasis-rcml %s: %d numbers, ARI %s app %s", __version__, len(settings.numbers), url, ari.app)
    # KeyboardInterrupt only gets here where loop signal handlers are unavailable (Windows).
    with contextlib.suppress(KeyboardInterrupt):
        _event_loop_run()(_until_signal(run_app(settings, event_log=event_log)))
    log.info("stopped")
    return 0


def _event_loop_run() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop's ``run`` where it is installed (Linux and macOS): its event loop and transports are written in C
    and cut the app's CPU per call by about a tenth (``scripts/bench-load``); else the standard loop's."""
    try:
        import uvloop
    except ImportError:
        log.debug("uvloop is not installed: the standard asyncio event loop runs the app")
        return asyncio.run
    return uvloop.run


async def _until_signal(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` until it returns or SIGINT/SIGTERM cancels it, which is a clean stop."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(main)

    def stop(signum: signal.Signals) -> None:
        log.info("%s: stopping", signum.name)
        task.cancel()

    installed: list[signal.Signals] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
            continue
        installed.append(signum)
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we were cancelled from outside, not by a signal
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
