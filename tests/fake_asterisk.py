"""The fake Asterisk, importable as ``tests.fake_asterisk``; it lives in the :mod:`tests.fake` package."""

from tests.fake import FakeAsterisk, Phone, ReferSubscription

__all__ = ["FakeAsterisk", "Phone", "ReferSubscription"]
