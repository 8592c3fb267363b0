"""Store URLs: bare paths, ``file://`` URLs, SQLAlchemy URLs and the ``#table=`` fragment.

``parse_store_url`` splits a URL into what :func:`~typedstore.store.make_store`
dispatches on (the scheme, without any ``+driver``), what the backend opens
(a directory, or a SQLAlchemy URL without the fragment) and the table named by
``#table=NAME``. :func:`redact` renders a URL with its password hidden; every
error message that shows a URL uses it.

Database servers: a URL whose scheme is PostgreSQL's or MariaDB/MySQL's must
have the form ``scheme[+driver]://[user[:password]@][host][:port]/database``;
anything else (one slash, no database...) is a :class:`UrlError` saying what is
wrong, never a store somewhere else. The driver is the one typedstore runs on
(:data:`DRIVERS`): ``postgresql://`` means psycopg 3 (``postgresql+psycopg``,
whatever SQLAlchemy's own default), ``mysql://`` and ``mariadb://`` mean
PyMySQL; another named driver is refused, and a missing driver package is an
error naming the extra that installs it.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

from .errors import UrlError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9.+_-]*)://")
#: Text shaped like a URL (a name, then "://") that _SCHEME does not accept:
#: never read as a path.
_URL_LIKE = re.compile(r"^[^/\\]*://")
# ``sqlite:relative/path.db``: SQLite with a path relative to the working directory.
_SQLITE_SHORT = re.compile(r"^(sqlite(?:\+[A-Za-z0-9_]+)?):(?!//)", re.IGNORECASE)
# ``file:/abs/path``: a file URL without the authority part (GC3Pie reads it as /abs/path).
_FILE_SHORT = re.compile(r"^file:(?!//)(/.*)$", re.IGNORECASE | re.DOTALL)
# A database-server scheme without the "//" of an authority: "postgresql:/host/db".
# ``postgres`` is PostgreSQL's short name (SQLAlchemy before 1.4 took it as an alias).
_SERVER_SHORT = re.compile(r"^((?:postgresql|postgres|mysql|mariadb)(?:\+[A-Za-z0-9_]+)?):(?!//)",
                           re.IGNORECASE)

#: The driver typedstore runs each SQL scheme on (its statements use the driver's
#: own connection: psycopg 3's streaming cursors, PyMySQL's unbuffered ones), the
#: package to import and the extra that installs it.
DRIVERS: dict[str, tuple[str, str, str | None]] = {
    "postgresql": ("psycopg", "psycopg", "postgres"),
    "mysql": ("pymysql", "pymysql", "mysql"),
    "mariadb": ("pymysql", "pymysql", "mysql"),
    "sqlite": ("pysqlite", "sqlite3", None),
}
#: How each server's URL is written, for messages.
_FORMS = {
    "postgresql": "postgresql://[user[:password]@]host[:port]/database",
    "mysql": "mysql://[user[:password]@]host[:port]/database",
    "mariadb": "mariadb://[user[:password]@]host[:port]/database",
}

# The password runs from the first ":" of the user part to the last "@" (it may
# hold "/", "#" or "@" when the URL was not percent-encoded).
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9.+-]*://[^:/@]*:)(.*)@")
#: A password given as a query parameter, which both drivers accept
#: (``?password=...``; libpq also reads ``sslpassword``, PyMySQL ``passwd``).
_QUERY_PASSWORD = re.compile(r"([?&](?:password|passwd|sslpassword)=)[^&#]*", re.IGNORECASE)


def redact(url: object, placeholder: str = "***") -> str:
    """Return ``url`` (a string, path or URL object) with any password replaced by
    ``placeholder`` (``***``)."""
    text = os.fspath(url) if isinstance(url, (str, os.PathLike)) else str(url)
    hidden = placeholder.replace("\\", "\\\\")
    return _QUERY_PASSWORD.sub(rf"\g<1>{hidden}", _PASSWORD.sub(rf"\g<1>{hidden}@", str(text)))


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL.

    ``str(url)`` is the whole URL, password included, so that a program can
    write it down and open the same store again (GC3Pie's ``Session`` keeps
    ``str(store.url)`` in its ``store.url`` file); ``repr(url)`` and
    :attr:`redacted` hide the password, and every typedstore message uses them.

    Attributes:
        scheme: lower-case scheme without driver (``file``, ``sqlite``, ``postgresql``).
        driver: the ``+driver`` part, or ``None``.
        target: a directory path for ``file``, else the URL without its fragment
            (for ``sqlite``, in SQLAlchemy's form: ``sqlite:////abs/path.db``).
        table: the ``#table=`` value, or ``None``.
        original: the URL as given (``str()`` of a URL object).
        text: the canonical URL: ``target`` plus the fragment; what ``str()`` gives.
    """

    scheme: str
    driver: str | None
    target: str
    table: str | None
    original: str
    text: str = ""

    def __post_init__(self) -> None:
        if not self.text:
            object.__setattr__(self, "text", self.original)

    @property
    def redacted(self) -> str:
        """The URL with its password replaced by ``***``."""
        return redact(self.text)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"StoreUrl({self.redacted!r})"


def _sqlite_target(base: str, shown: str) -> str:
    """SQLAlchemy's URL for a ``sqlite:`` store URL, read the way GC3Pie 2.6.8 reads it.

    GC3Pie (``gc3libs.persistence.sql.SqlStore._to_sqlalchemy_url``) rebuilds a
    ``sqlite`` URL as ``sqlite:///`` + its path, so ``sqlite:///tmp/x.db`` and
    ``sqlite:////tmp/x.db`` both name ``/tmp/x.db``: the path is absolute. A
    path relative to the working directory is written without slashes,
    ``sqlite:jobs.db``, and is made absolute here, so the URL still names the
    same file when it is read back from another directory. ``sqlite://`` and
    ``sqlite:///:memory:`` are in-memory databases; an empty path
    (``sqlite:///``) or a host (``sqlite://host/x.db``) is an error.
    """
    scheme, _, rest = base.partition(":")
    path, sep, query = rest.partition("?")
    query = sep + query
    if path in ("//", "///:memory:", ":memory:"):
        return f"{scheme}://{query}"
    if path.startswith("//"):
        netloc, _, local = path[2:].partition("/")
        if netloc not in ("", "localhost"):
            raise UrlError(f"sqlite URL names a host ({netloc!r}); use sqlite:////path/to/file.db: "
                           f"{shown}", shown)
        if not local.strip("/"):
            raise UrlError(f"sqlite URL has no file path (sqlite:/// is not a database; "
                           f"sqlite:// is an in-memory one): {shown}", shown)
        absolute = "/" + local.lstrip("/")
    else:
        if not path.strip("/"):
            raise UrlError(f"sqlite URL has no file path: {shown}", shown)
        absolute = os.path.abspath(os.path.expanduser(unquote(path)))
    return f"{scheme}:///{absolute}{query}"


def parse_store_url(uri: object) -> StoreUrl:
    """Parse a path or URL; raise :class:`UrlError` (naming the redacted URL) if malformed.

    ``uri`` is a string, an ``os.PathLike`` or any URL object whose ``str()``
    is the URL (GC3Pie hands its ``gc3libs.url.Url`` objects to ``make_store``).
    """
    if isinstance(uri, StoreUrl):
        return uri
    if isinstance(uri, (str, os.PathLike)):
        text: object = os.fspath(uri)
    elif uri is None or isinstance(uri, (bytes, int, float)):
        text = uri
    else:
        text = str(uri)
    if not isinstance(text, str) or not text:
        raise UrlError(f"empty or non-text store URL: {text!r}", str(text))
    if text != text.strip():
        # " postgresql://h/db" would be a directory named " postgresql:" under the
        # working directory, "sqlite:x.db " a database file "x.db ".
        shown = redact(text)
        raise UrlError(f"store URL {shown!r} begins or ends with white space; remove it (a "
                       "directory whose name really begins or ends with a space is written "
                       "as a file:// URL with %20)", shown)
    short_file = _FILE_SHORT.match(text)
    if short_file is not None:
        path = os.path.abspath(unquote(short_file.group(1)))
        return StoreUrl("file", None, path, None, text, path)
    server_short = _SERVER_SHORT.match(text)
    if server_short is not None:
        scheme = server_short.group(1).lower().partition("+")[0]
        scheme = "postgresql" if scheme == "postgres" else scheme
        raise UrlError(
            f"{scheme} URL without '//' after '{server_short.group(1)}:': write it "
            f"{_FORMS[scheme]} (read as it is, it would have named a directory): "
            f"{redact(text)}", redact(text))
    match = _SCHEME.match(text) or _SQLITE_SHORT.match(text)
    if match is None and _URL_LIKE.match(text):
        shown = redact(text)
        raise UrlError(f"store URL {shown!r} has no valid scheme before '://' (a letter, then "
                       "letters, digits, '+', '-', '.', '_'; no spaces): read as a path, it "
                       "would have named a directory", shown)
    if match is None:
        # A bare path names a file store directory; str() gives it absolute, so
        # the URL still names it when read back from another directory.
        path = os.path.abspath(os.path.expanduser(text))
        return StoreUrl("file", None, path, None, text, path)
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
    if scheme == "postgres":  # the alias SQLAlchemy 1.4 dropped (Heroku-style URLs)
        scheme = "postgresql"
        base = "postgresql" + base[len("postgres"):]
    if scheme == "file":
        parts = urlsplit(base)
        if parts.netloc not in ("", "localhost"):
            raise UrlError(f"file URL must name a local path: {redact(text)}", redact(text))
        path = unquote(parts.path)
        if not path:
            raise UrlError(f"file URL has no path: {redact(text)}", redact(text))
        return StoreUrl("file", None, os.path.abspath(path), table, text)
    if scheme == "sqlite":
        _check_driver(scheme, driver, redact(text))
        target = _sqlite_target(_lower_scheme(base) if "://" in base else
                                base[:6].lower() + base[6:], redact(text))
        canonical = target + (f"#{fragment}" if fragment else "")
        return StoreUrl(scheme, driver or None, target, table, text, canonical)
    base = _quote_password(_lower_scheme(base))
    if scheme in _FORMS:
        _check_driver(scheme, driver, redact(text))
        base = _server_target(scheme, base, redact(text))
    return StoreUrl(scheme, driver or None, base, table, text)


def _check_driver(scheme: str, driver: str, shown: str) -> None:
    """Refuse a driver typedstore does not run on, and a missing driver package
    (naming the extra that installs it)."""
    name, module, extra = DRIVERS[scheme]
    if driver and driver != name:
        raise UrlError(
            f"{scheme}+{driver}: typedstore runs {scheme} stores on the {name} driver only "
            f"(it uses that driver's connections directly); write the URL without "
            f"'+{driver}' or with '+{name}': {shown}", shown)
    try:
        importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install 'typedstore[{extra}]'" if extra else f"install {module}"
        raise UrlError(f"{scheme} stores need the {module} package ({exc}); {hint}: {shown}",
                       shown) from None


def _server_target(scheme: str, base: str, shown: str) -> str:
    """The SQLAlchemy URL of a database-server store URL, with typedstore's driver;
    :class:`UrlError` if it is not ``scheme[+driver]://...host.../database``."""
    import sqlalchemy as sa  # only for server URLs: parsing paths stays light

    try:
        url = sa.make_url(base)
        _ = url.port
    except Exception as exc:
        raise UrlError(f"{scheme} URL cannot be read ({type(exc).__name__}: "
                       f"{redact(str(exc))}); write it {_FORMS[scheme]}: {shown}", shown) from None
    if not url.database:
        raise UrlError(f"{scheme} URL names no database (the path after host[:port]/): write "
                       f"it {_FORMS[scheme]}: {shown}", shown)
    if "/" in url.database:
        raise UrlError(f"{scheme} URL's path {url.database!r} is not one database name (a '/' "
                       f"after it?): write it {_FORMS[scheme]}: {shown}", shown)
    _check_encoding(scheme, dict(url.query), shown)
    name = DRIVERS[scheme][0]
    return f"{scheme}+{name}://{base.partition('://')[2]}"


#: Connection parameters that decide how text travels, with the values that carry
#: every Unicode character (lower case, without "-" and "_"), per scheme.
_ENCODINGS: dict[str, dict[str, tuple[str, ...]]] = {
    # PyMySQL's "utf8" is MariaDB's utf8mb3: 3 bytes at most, no emoji.
    "mysql": {"charset": ("utf8mb4",), "use_unicode": ("1", "true", "yes")},
    "mariadb": {"charset": ("utf8mb4",), "use_unicode": ("1", "true", "yes")},
    "postgresql": {"client_encoding": ("utf8", "unicode")},
}


def _check_encoding(scheme: str, query: dict[str, object], shown: str) -> None:
    """Refuse a URL whose connection parameters would not carry every Unicode
    character (``?charset=utf8`` or ``latin1`` on MariaDB/MySQL, a PostgreSQL
    ``client_encoding`` other than UTF-8): text typedstore stores as any
    Unicode would fail or be mangled on the way."""
    for parameter, good in _ENCODINGS.get(scheme, {}).items():
        value = query.get(parameter)
        if value is None:
            continue
        values = value if isinstance(value, tuple) else (value,)
        for item in values:
            if str(item).lower().replace("-", "").replace("_", "") not in good:
                raise UrlError(
                    f"{scheme} URL sets {parameter}={item}: typedstore stores any Unicode "
                    f"text (emoji included), which needs {parameter}={good[0]}; remove the "
                    f"parameter (typedstore's connections use {good[0]}): {shown}", shown)


def _lower_scheme(url: str) -> str:
    """``POSTGRESQL://...`` as ``postgresql://...`` (SQLAlchemy knows lower-case names only)."""
    scheme, sep, rest = url.partition("://")
    return scheme.lower() + sep + rest


def _quote_password(url: str) -> str:
    """Percent-encode the characters of a raw password that would cut the URL short.

    GC3Pie (``gc3libs.url.Url``) takes the user part up to the *last* ``@``, so
    ``postgresql://u:p@ss@host/db`` has the password ``p@ss``; SQLAlchemy would
    stop at the first ``@`` (and send the rest of the password to DNS as a host
    name). Already-encoded passwords are left as they are.
    """
    match = _PASSWORD.match(url)
    if match is None:
        return url
    password = url[match.end(1):match.end() - 1]
    if not any(ch in password for ch in "@/#?"):
        return url
    return url[:match.end(1)] + quote(password, safe="%") + url[match.end() - 1:]
