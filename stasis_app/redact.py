"""Keep credentials out of logs and error messages: every URL shown to a person goes through :func:`redact_url`."""

from __future__ import annotations

import re

__all__ = ["redact_url"]

# scheme://userinfo@ : the userinfo runs to the LAST "@" before the path, query, fragment or a space, the
# way URL parsers split it, so "u:p@ss@host" hides all of "u:p@ss".
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s]*@")


def redact_url(url: str) -> str:
    """``url`` with its user information (``user:password@``) replaced by ``***@``.

    Works on any string: a malformed URL (``http://u:p@[::1/x``) or a message naming several URLs.
    Text without ``scheme://...@`` (``app:NAME``, a plain URL) is returned unchanged.
    """
    if "@" not in url:
        return url  # nothing to hide, and most URLs have none: no regex
    return _USERINFO.sub(r"\1***@", url)
