"""Fixtures of the end-to-end tests: one sandbox Asterisk per session, the app as a process per test.

They run only as root, with the sandbox built, inside ``scripts/in-private-net`` (``scripts/test`` does all
that); anywhere else every e2e test is skipped with one line saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.e2e.harness import Phones, RcmlProcess, Sandbox, WebApp, unavailable


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    sandbox = Sandbox()
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture(scope="session")
def _web_server() -> Iterator[WebApp]:
    web = WebApp()
    web.start()
    yield web
    web.stop()


@pytest.fixture
def web(_web_server: WebApp) -> WebApp:
    """The customer's web app, with no routes and no recorded requests."""
    _web_server.reset()
    return _web_server


@pytest.fixture
def rcml(sandbox: Sandbox, tmp_path, request) -> Iterator[RcmlProcess]:
    """The app under test (call ``rcml.start(...)``). On teardown: nothing may be left in Asterisk, and the app
    must stop on SIGTERM with status 0 and no traceback."""
    app = RcmlProcess(sandbox, tmp_path)
    try:
        yield app
    finally:
        left = sandbox.leftovers(settle=5.0)
        if left:
            sandbox.clean_up()
        status = app.stop()
        output = app.log()
    assert not left, f"left behind in Asterisk: {left}"
    assert status == 0, f"the app exited with {status}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    app.save_capture()


@pytest.fixture
async def phones(request) -> AsyncIterator[Phones]:
    phones = Phones(request.node.name)
    try:
        yield phones
    finally:
        await phones.close()
