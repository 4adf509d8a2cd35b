"""A fake Asterisk for tests: :class:`FakeAsterisk` (API and assumptions in :mod:`tests.fake.asterisk`)."""

from tests.fake.asterisk import FakeAsterisk
from tests.fake.model import Phone, ReferSubscription

__all__ = ["FakeAsterisk", "Phone", "ReferSubscription"]
