"""Store URLs: bare paths, ``file://`` URLs, SQLAlchemy URLs and the ``#table=`` fragment.

``parse_store_url`` splits a URL into what :func:`~typedstore.store.make_store`
dispatches on (the scheme, without any ``+driver``), what the backend opens
(a directory, or a SQLAlchemy URL without the fragment) and the table named by
``#table=NAME``. :func:`redact` renders a URL with its password hidden; every
error message that shows a URL uses it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import UrlError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.+-]*)://")
# The password runs from the first ":" of the user part to the last "@" (it may
# hold "/", "#" or "@" when the URL was not percent-encoded).
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9.+-]*://[^:/@]*:)(.*)@")


def redact(url: str | os.PathLike[str]) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    return _PASSWORD.sub(r"\1***@", os.fspath(url))


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL.

    Attributes:
        scheme: lower-case scheme without driver (``file``, ``sqlite``, ``postgresql``).
        driver: the ``+driver`` part, or ``None``.
        target: a directory path for ``file``, else the URL without its fragment.
        table: the ``#table=`` value, or ``None``.
        original: the URL as given.
    """

    scheme: str
    driver: str | None
    target: str
    table: str | None
    original: str

    def __str__(self) -> str:
        return redact(self.original)


def parse_store_url(uri: str | os.PathLike[str] | StoreUrl) -> StoreUrl:
    """Parse a path or URL; raise :class:`UrlError` (naming the redacted URL) if malformed."""
    if isinstance(uri, StoreUrl):
        return uri
    text = os.fspath(uri)
    if not isinstance(text, str) or not text:
        raise UrlError(f"empty or non-text store URL: {text!r}", str(text))
    match = _SCHEME.match(text)
    if match is None:
        # A bare path names a file store directory.
        return StoreUrl("file", None, os.path.abspath(os.path.expanduser(text)), None, text)
    base, sep, fragment = text.rpartition("#")
    if not sep:
        base, fragment = text, ""
    table = None
    if fragment:
        values = parse_qs(fragment, keep_blank_values=True).get("table")
        if not values or not values[-1]:
            # Do not echo the fragment: in a URL whose password holds a "#" it
            # would be the password's tail.
            raise UrlError(
                f"store URL fragment must be '#table=NAME' in {redact(text)}", redact(text)
            )
        table = values[-1]
    full_scheme = match.group(1).lower()
    scheme, _, driver = full_scheme.partition("+")
    if scheme == "file":
        parts = urlsplit(base)
        if parts.netloc not in ("", "localhost"):
            raise UrlError(f"file URL must name a local path: {redact(text)}", redact(text))
        path = unquote(parts.path)
        if not path:
            raise UrlError(f"file URL has no path: {redact(text)}", redact(text))
        return StoreUrl("file", None, os.path.abspath(path), table, text)
    return StoreUrl(scheme, driver or None, base, table, text)
