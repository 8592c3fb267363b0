"""The type map: the column type of each row-field annotation on each dialect.

A row model's extracted fields mean the same on every backend: the same
values are stored, read back equal, and compare the same in queries. This
module owns that promise. For each supported annotation it chooses the column
type per dialect (so that values round-trip exactly) and the value policy
(what is normalised, what is refused before any statement runs):

=====================  ====================  ====================  ============================
annotation             SQLite                PostgreSQL            MariaDB / MySQL
=====================  ====================  ====================  ============================
``int``                BIGINT                BIGINT                BIGINT
``float``              DOUBLE                DOUBLE PRECISION      DOUBLE
``bool``               BOOLEAN               BOOLEAN               BOOL
``str``                TEXT                  TEXT COLLATE "C"      LONGTEXT utf8mb4 binary
``str`` (max_length)   VARCHAR(n)            VARCHAR(n) "C"        VARCHAR(n) utf8mb4 binary
                                                                   (LONGTEXT above 255)
``bytes``              BLOB                  BYTEA                 LONGBLOB
``datetime``           DATETIME (UTC text)   TIMESTAMP (UTC)       DATETIME(6) (UTC)
``date``               DATE                  DATE                  DATE
``Decimal``            BIGINT (scaled)       NUMERIC(p, s)         DECIMAL(p, s)
``Enum``/``StrEnum``   VARCHAR(255) (name)   VARCHAR(255) "C"      VARCHAR(255) utf8mb4 binary
``Flag``/``IntFlag``   BIGINT (value)        BIGINT                BIGINT
``uuid.UUID``          CHAR(32) (hex)        UUID                  CHAR(32) (hex)
=====================  ====================  ====================  ============================

``X | None`` (``Optional[X]``) is the same column, nullable. docs/types.md
has the full table with the reasons and the value policy.

The binary collation on MariaDB is ``utf8mb4_nopad_bin`` (MySQL 8:
``utf8mb4_0900_bin``): case- and trailing-space-sensitive, code-point order,
as SQLite's ``BINARY`` and PostgreSQL's ``"C"``. Every text column carries
``CHARACTER SET utf8mb4`` itself, so a database whose default is ``latin1`` or
``utf8mb3`` still stores any Unicode text.

:func:`field_types` checks a row model once (an annotation outside the map,
``unique=True``, a field name over 63 bytes are a
:class:`~typedstore.errors.SchemaError` naming the field); each
:class:`FieldType`'s ``check`` is the value policy
:class:`~typedstore.rows.RowBuilder` applies before any statement, its
``condition`` (:func:`condition_value`) the policy of values in query
conditions (:mod:`typedstore.query`).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import types
import typing
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sqlalchemy.dialects import mysql, postgresql

from .errors import SchemaError

#: The range of a 64-bit signed integer (BIGINT everywhere).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: Longest value (UTF-8 bytes for text) an indexed text or bytes column holds:
#: a PostgreSQL B-tree entry holds at most 2,704 bytes, so longer values are
#: refused on every backend.
INDEXED_VALUE_BYTES = 2000
#: Longest ``max_length`` stored as VARCHAR on MariaDB/MySQL; longer ones are
#: LONGTEXT there (a row's VARCHARs share 65,535 bytes; an index key 3,072).
MYSQL_VARCHAR_MAX = 255
#: Prefix (characters, or bytes for binary columns) a MariaDB/MySQL index takes
#: of a LONGTEXT/LONGBLOB column; equality and range queries stay exact.
MYSQL_INDEX_PREFIX = 255
#: Most digits of a ``Decimal`` field: SQLite holds it as a 64-bit scaled integer.
DECIMAL_MAX_DIGITS = 18
#: Column width of enum fields (member names).
ENUM_LENGTH = 255
#: MariaDB/MySQL table options of every typedstore table.
MYSQL_CHARSET = "utf8mb4"
#: Key of ``Column.info`` holding a store column's :class:`FieldType`.
FIELD_TYPE_KEY = "typedstore_field_type"

_UTC = dt.timezone.utc


class Refused(ValueError):
    """A value the policy refuses; ``str()`` is the reason, the same on every backend."""


# ---------------------------------------------------------------- dialect helpers


def is_mysql(dialect: sa.Dialect) -> bool:
    return dialect.name in ("mysql", "mariadb")


def mysql_collation(dialect: sa.Dialect) -> str:
    """The binary, no-pad collation of utf8mb4 on this server.

    MariaDB: ``utf8mb4_nopad_bin``; MySQL 8: ``utf8mb4_0900_bin``; older MySQL
    has only ``utf8mb4_bin``, which ignores trailing spaces in comparisons.
    Known after the first connection (SQLAlchemy detects MariaDB behind a
    ``mysql://`` URL then); DDL always runs on a connection.
    """
    if dialect.name == "mariadb" or getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = getattr(dialect, "server_version_info", None) or ()
    if tuple(version[:1]) >= (8,):
        return "utf8mb4_0900_bin"
    return "utf8mb4_bin"


def mysql_table_options(dialect: sa.Dialect) -> dict[str, Any]:
    """``mysql_charset``/``mysql_collate`` table keywords: utf8mb4 and the binary
    collation, whatever the database's default."""
    if not is_mysql(dialect):
        return {}
    return {"mysql_charset": MYSQL_CHARSET, "mysql_collate": mysql_collation(dialect)}


def _text_impl(dialect: sa.Dialect, length: int | None) -> sa.types.TypeEngine[Any]:
    if dialect.name == "postgresql":
        if length is not None:
            return postgresql.VARCHAR(length, collation="C")
        return postgresql.TEXT(collation="C")
    if is_mysql(dialect):
        collation = mysql_collation(dialect)
        if length is not None and length <= MYSQL_VARCHAR_MAX:
            return mysql.VARCHAR(length, charset=MYSQL_CHARSET, collation=collation)
        return mysql.LONGTEXT(charset=MYSQL_CHARSET, collation=collation)
    return sa.String(length) if length is not None else sa.Text()


# ---------------------------------------------------------------- column types


class Text(sa.types.TypeDecorator[str]):
    """``str``: TEXT (or VARCHAR(n)) compared by code point, see the module docstring."""

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int | None = None) -> None:
        super().__init__(length)
        self.length = length

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return _text_impl(dialect, self.length)

    def needs_index_prefix(self) -> bool:
        """MariaDB/MySQL index this column by a prefix (it is LONGTEXT there)."""
        return self.length is None or self.length > MYSQL_VARCHAR_MAX

    @property
    def python_type(self) -> type[Any]:
        return str

    def __repr__(self) -> str:
        return f"Text({self.length})" if self.length is not None else "Text()"


class Bytes(sa.types.TypeDecorator[bytes]):
    """``bytes``: BLOB / BYTEA / LONGBLOB (a MariaDB BLOB holds only 64 KB)."""

    impl = sa.LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if is_mysql(dialect):
            return mysql.LONGBLOB()
        return sa.LargeBinary()

    def needs_index_prefix(self) -> bool:
        return True

    @property
    def python_type(self) -> type[Any]:
        return bytes

    def __repr__(self) -> str:
        return "Bytes()"


class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """Aware ``datetime``: stored as UTC without a zone on every backend, read back
    aware in UTC. The database never converts (PostgreSQL's session time zone
    plays no part); microseconds are kept everywhere."""

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return postgresql.TIMESTAMP(timezone=False, precision=6)
        if is_mysql(dialect):
            return mysql.DATETIME(fsp=6)
        return sa.DateTime()

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise TypeError(f"{value!r} is not a datetime")
        return utc_naive(value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC)
        return value.astimezone(_UTC)

    @property
    def python_type(self) -> type[Any]:
        return dt.datetime

    def __repr__(self) -> str:
        return "UtcDateTime()"


def utc_naive(value: dt.datetime) -> dt.datetime:
    """An aware datetime as naive UTC (what every backend stores); raises
    :class:`Refused` for a naive one or one outside years 1..9999 in UTC."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise Refused("a naive datetime (no time zone) cannot be stored unambiguously; give "
                      "an aware one, such as datetime.now(timezone.utc)")
    try:
        return value.astimezone(_UTC).replace(tzinfo=None)
    except OverflowError:
        raise Refused(f"{value.isoformat()} is outside the years 1..9999 once converted to "
                      "UTC") from None


class ScaledDecimal(sa.types.TypeDecorator[Decimal]):
    """``Decimal`` with ``max_digits`` and ``decimal_places``: NUMERIC(p, s), and on
    SQLite (whose NUMERIC is a float) the value times 10**s as a 64-bit integer,
    exact and ordered."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return sa.BigInteger()
        return sa.Numeric(self.precision, self.scale, asdecimal=True)

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        number = value if isinstance(value, Decimal) else Decimal(
            repr(value) if isinstance(value, float) else value)
        if dialect.name != "sqlite":
            return number
        scaled = number.scaleb(self.scale)
        if scaled == scaled.to_integral_value():
            return int(scaled)
        return float(scaled)  # only in comparisons with values of more decimal places

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return Decimal(int(value)).scaleb(-self.scale).quantize(self._quantum)
        return Decimal(value).quantize(self._quantum)

    @property
    def python_type(self) -> type[Any]:
        return Decimal

    def __repr__(self) -> str:
        return f"ScaledDecimal({self.precision}, {self.scale})"


class EnumName(sa.types.TypeDecorator[enum.Enum]):
    """An ``Enum`` member stored by name in a VARCHAR (not a native enum type).

    Why not PostgreSQL's ``CREATE TYPE ... AS ENUM``: one row model builds many
    store tables, which would share (and drop) one type; a new member would need
    an ``ALTER TYPE`` migration; and the column would mean something else on the
    other backends. A VARCHAR of the name is the same everywhere. Range queries
    compare names as text.
    """

    impl = sa.String
    cache_ok = True

    def __init__(self, enum_class: type[enum.Enum]) -> None:
        super().__init__(ENUM_LENGTH)
        self.enum_class = enum_class

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        return _text_impl(dialect, ENUM_LENGTH)

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, self.enum_class):
            return value.name
        try:
            return self.enum_class(value).name
        except ValueError:
            raise ValueError(f"{value!r} is not a member of {self.enum_class.__name__}") from None

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        member = self.enum_class.__members__.get(value)
        return value if member is None else member  # a member since removed: its name

    @property
    def python_type(self) -> type[Any]:
        return self.enum_class

    def __repr__(self) -> str:
        return f"EnumName({self.enum_class.__module__}.{self.enum_class.__qualname__})"


class FlagValue(sa.types.TypeDecorator[enum.Flag]):
    """An ``enum.Flag``/``IntFlag`` value stored as its integer in a BIGINT.

    A flag value is any combination of members (``Perm.R | Perm.W``, or none),
    which has no member name to store; its integer round-trips exactly and
    compares the same on every backend (bit tests with ``.op("&")`` too). Read
    back as the flag class (an integer whose bits the class no longer has: the
    integer).
    """

    impl = sa.BigInteger
    cache_ok = True

    def __init__(self, flag_class: type[enum.Flag]) -> None:
        super().__init__()
        self.flag_class = flag_class

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        return int(self.flag_class(value).value)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        try:
            return self.flag_class(int(value))
        except ValueError:
            return int(value)  # bits of members since removed (a STRICT Flag)

    @property
    def python_type(self) -> type[Any]:
        return self.flag_class

    def __repr__(self) -> str:
        return f"FlagValue({self.flag_class.__module__}.{self.flag_class.__qualname__})"


class PortableUuid(sa.types.TypeDecorator[uuid.UUID]):
    """``uuid.UUID``: PostgreSQL's UUID, elsewhere CHAR(32) of lower-case hex (the
    same order as PostgreSQL's byte order; MariaDB's own UUID type sorts its
    parts in another order)."""

    impl = sa.Uuid
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return sa.Uuid(native_uuid=True)
        return sa.Uuid(native_uuid=False)

    @property
    def python_type(self) -> type[Any]:
        return uuid.UUID

    def __repr__(self) -> str:
        return "PortableUuid()"


# ---------------------------------------------------------------- the value policy

#: NUL (PostgreSQL cannot store it) and lone surrogates (not Unicode text: no
#: driver can encode them).
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _check_text(value: str, indexed: bool = False) -> str:
    if value.isascii():  # a flag of the string in CPython: the common case costs little
        bad = _BAD_TEXT.search(value) if "\x00" in value else None
    else:
        bad = _BAD_TEXT.search(value)
    if bad is not None:
        if bad.group() == "\x00":
            raise Refused("the text holds a NUL character (\\x00), which PostgreSQL cannot "
                          "store; it is refused on every backend")
        raise Refused(f"the text holds a lone surrogate (U+{ord(bad.group()):04X}), which is "
                      "not valid Unicode and no database encodes")
    if indexed and len(value) * 4 > INDEXED_VALUE_BYTES:
        size = len(value.encode("utf-8"))
        if size > INDEXED_VALUE_BYTES:
            raise Refused(f"the text is {size} bytes long in UTF-8; an indexed field holds at "
                          f"most {INDEXED_VALUE_BYTES} (PostgreSQL's index limit): declare it "
                          "without index=True for longer values")
    return value


def _check_indexed_text(value: str) -> str:
    return _check_text(value, indexed=True)


def _check_bytes(value: bytes, indexed: bool) -> bytes:
    if indexed and len(value) > INDEXED_VALUE_BYTES:
        raise Refused(f"the value is {len(value)} bytes long; an indexed field holds at most "
                      f"{INDEXED_VALUE_BYTES} (PostgreSQL's index limit): declare it without "
                      "index=True for longer values")
    return value


def _check_int(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        # An integer of thousands of digits cannot even be printed (sys.set_int_max_str_digits).
        shown = str(value) if value.bit_length() <= 256 else \
            f"an integer of {value.bit_length()} bits"
        raise Refused(f"{shown} is outside the 64-bit integer range "
                      "(-2**63 .. 2**63-1) every backend stores")
    return value


def _check_float(value: float) -> float:
    if value - value != 0.0:  # NaN, or an infinity (inf - inf is NaN)
        raise Refused(f"{value!r} is not a finite number; NaN and infinities are refused on "
                      "every backend (MariaDB stores neither, SQLite turns NaN into NULL)")
    if value == 0.0:
        return 0.0  # -0.0: MariaDB and SQLite give back 0.0
    return value


def _check_datetime(value: dt.datetime) -> dt.datetime:
    return utc_naive(value).replace(tzinfo=_UTC)


def _decimal_check(scale: int) -> Callable[[Decimal], Decimal]:
    quantum = Decimal(1).scaleb(-scale)

    def check(value: Decimal) -> Decimal:
        value = value.quantize(quantum)
        return value.copy_abs() if value.is_zero() else value  # -0 is 0

    return check


#: The policy of integer and float values (also of GC3Pie ``extra_fields`` columns).
check_int = _check_int
check_float = _check_float


def check_state(value: str) -> str:
    """The value policy of the ``state`` column (text without NUL or surrogates)."""
    return _check_text(value, indexed=False)


def column_check(type_: sa.types.TypeEngine[Any]) -> Callable[[Any], Any] | None:
    """The value policy of a column of a plain SQLAlchemy type (GC3Pie's
    ``extra_fields``, which are not row fields): text without NUL or surrogates and
    within the column's length, finite floats, integers within the column's size
    (``SMALLINT`` 16, ``INTEGER`` 32, ``BIGINT`` 64 bits, as PostgreSQL and MariaDB
    hold them). Values of other types pass."""
    if isinstance(type_, (sa.Enum, sa.Boolean)):
        return None
    if isinstance(type_, sa.Integer):
        bits = 16 if isinstance(type_, sa.SmallInteger) else \
            64 if isinstance(type_, sa.BigInteger) else 32
        low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

        def check_integer(value: Any) -> Any:
            if isinstance(value, int) and not low <= value <= high:
                shown = str(value) if value.bit_length() <= 256 else "the integer"
                raise Refused(f"{shown} is outside the {bits}-bit range of the column")
            return value

        return check_integer
    if isinstance(type_, sa.Float):
        def check_number(value: Any) -> Any:
            return _check_float(value) if isinstance(value, float) else value

        return check_number
    if isinstance(type_, sa.String):
        length = type_.length

        def check_string(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            if length is not None and len(value) > length:
                raise Refused(f"the text is {len(value)} characters long; the column holds "
                              f"{length}")
            return _check_text(value)

        return check_string
    return None


# ---------------------------------------------------------------- the map


@dataclass(frozen=True)
class FieldType:
    """How one row field is stored.

    Attributes:
        name (str): the field (column) name.
        kind (str): ``int``, ``float``, ``bool``, ``str``, ``bytes``, ``datetime``,
            ``date``, ``decimal``, ``enum`` or ``uuid``.
        python_type (type): the annotation without ``| None``.
        nullable (bool): ``None`` is stored as NULL (the annotation admits it,
            or ``nullable=True``); otherwise ``None`` is refused.
        indexed (bool): the column has an index (limits text and bytes).
        column_type: the SQLAlchemy type, rendered per dialect.
        validation (Any): the annotation Pydantic validates values against
            (``AwareDatetime`` for ``datetime``).
        check: the value policy after validation: returns the value to store,
            raises :class:`Refused`.
        exact (frozenset[type]): value types validation would return unchanged,
            which skip it.
        condition: the value policy of a value compared with the field in a
            query condition (:func:`condition_value`).
    """

    name: str
    kind: str
    python_type: type[Any]
    nullable: bool
    indexed: bool
    column_type: sa.types.TypeEngine[Any]
    validation: Any
    check: Callable[[Any], Any] | None
    exact: frozenset[type]
    condition: Callable[[Any], Any] | None = None


#: Annotations of the map, for messages and docs.
SUPPORTED = ("int", "float", "bool", "str", "bytes", "datetime (aware)", "date", "Decimal",
             "enum.Enum", "enum.Flag/IntFlag", "uuid.UUID", "and X | None of each")

_cache: weakref.WeakKeyDictionary[type, dict[str, FieldType]] = weakref.WeakKeyDictionary()


def refuse(model: type, name: str, why: str) -> SchemaError:
    """The :class:`SchemaError` refusing field ``name`` of row model ``model``."""
    return _refuse(model, name, why)


def _refuse(model: type, name: str, why: str) -> SchemaError:
    table = str(getattr(model, "__tablename__", "") or "")
    return SchemaError(
        f"row model {model.__name__}, field {name!r}: {why} (typedstore's type map: "
        f"{', '.join(SUPPORTED)}; see docs/types.md)",
        table=table,
    )


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(options) < len(typing.get_args(annotation))
        if len(options) == 1:
            return options[0], optional
        return annotation, optional
    return annotation, False


def _metadata_value(field: FieldInfo, name: str) -> Any:
    for item in field.metadata:
        value = getattr(item, name, None)
        if value is not None:
            return value
    return None


def _given(field: FieldInfo, name: str) -> Any:
    """A SQLModel ``Field`` keyword as given (``None`` when not)."""
    value = getattr(field, name, PydanticUndefined)
    return None if value is PydanticUndefined else value


def annotation_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


#: The longest column name every backend holds: PostgreSQL's 63 bytes (UTF-8)
#: (MariaDB/MySQL take 64 characters, SQLite any).
FIELD_NAME_BYTES = 63


def _check_field_name(model: type, name: str) -> None:
    """Refuse a field name some backend cannot take as a column name: a row model
    means the same everywhere, so the strictest limit holds on every backend."""
    size = len(name.encode("utf-8", "surrogatepass"))
    if size > FIELD_NAME_BYTES:
        raise _refuse(model, name, f"the field name is {size} bytes long in UTF-8; a column "
                                   f"name holds at most {FIELD_NAME_BYTES} on PostgreSQL (64 "
                                   "characters on MariaDB/MySQL), so row field names are "
                                   f"limited to {FIELD_NAME_BYTES} bytes on every backend")
    if any(ord(ch) > 0xFFFF for ch in name):
        raise _refuse(model, name, "MariaDB/MySQL column names hold characters of the Basic "
                                   "Multilingual Plane only")


def _check_flag(value: Any) -> Any:
    number = int(value.value) if isinstance(value, enum.Flag) else int(value)
    if not 0 <= number <= INT64_MAX:
        raise Refused(f"flag value {number} is outside 0 .. 2**63-1")
    return value


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # an int of thousands of digits, a broken __repr__
        return f"a {type(value).__name__}"
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


_NAIVE = ("a naive datetime (no time zone) cannot be stored unambiguously; give an aware "
          "one, such as datetime.now(timezone.utc)")


def _condition_policy(kind: str, base: type, validation: Any,
                      check: Callable[[Any], Any] | None, max_length: int | None,
                      indexed: bool, field: FieldInfo) -> Callable[[Any], Any]:
    """The policy of a value compared with a field in a query condition.

    The value is validated as the field's type, without its constraints
    (``cores > -1`` is a question even with ``ge=0``), in Pydantic's lax mode
    as on save (``"8"`` for an ``int`` field is 8); then the value policy
    refuses what the column can never hold: NaN, infinities, integers beyond
    64 bits, naive datetimes, NUL characters, lone surrogates, text longer
    than ``max_length`` (or than an indexed column holds), a ``Decimal`` with
    more integer digits than ``max_digits - decimal_places`` or more decimal
    places than ``decimal_places`` (no stored value has them), a value that is
    not a member of the field's enum.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(validation)
    limit: Decimal | None = None
    places = 0
    if kind == "decimal":
        digits = _metadata_value(field, "max_digits")
        places = int(_metadata_value(field, "decimal_places"))
        limit = Decimal(10) ** (int(digits) - places)

    def condition(value: Any) -> Any:
        try:
            value = adapter.validate_python(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            if error.get("type") == "timezone_aware":
                raise Refused(_NAIVE) from None
            raise Refused(f"{_short(value)} is not valid: {error['msg']}") from None
        if kind == "decimal":
            if not value.is_finite():
                raise Refused(f"{value} is not a finite number")
            assert limit is not None
            if abs(value) >= limit:
                raise Refused(f"{value} has more integer digits than the field holds "
                              f"(max_digits - decimal_places)")
            exponent = value.normalize().as_tuple().exponent
            if isinstance(exponent, int) and exponent < -places:
                # No stored value has them: SQLite's scaled integers could only
                # be compared through a float, inexactly (the others exactly).
                raise Refused(f"{value} has more decimal places than the field's "
                              f"{places} (decimal_places)")
            return value
        if kind in ("str", "bytes") and max_length is not None and len(value) > max_length:
            unit = "characters" if kind == "str" else "bytes"
            raise Refused(f"the value is {len(value)} {unit} long; the field holds at most "
                          f"{max_length} (max_length)")
        return value if check is None else check(value)

    return condition


def condition_value(field: FieldType | None, value: Any) -> Any:
    """``value`` as a query condition on ``field`` compares it (raises
    :class:`Refused` with the reason); ``None`` is passed through (SQL NULL)."""
    if value is None or field is None or field.condition is None:
        return value
    return field.condition(value)


def pattern_value(value: Any) -> str:
    """A LIKE pattern (``like``, ``startswith``...): text without NUL characters
    or lone surrogates (raises :class:`Refused`)."""
    if not isinstance(value, str):
        raise Refused(f"{_short(value)} is not text; LIKE patterns are str")
    return _check_text(value)


def field_type(model: type, name: str, field: FieldInfo) -> FieldType:
    """The :class:`FieldType` of one field of row model ``model``; raises
    :class:`SchemaError` naming the field if its annotation is outside the map."""
    base, optional = _unwrap_optional(field.annotation)
    explicit = _given(field, "nullable")
    nullable = bool(explicit) if isinstance(explicit, bool) else optional
    indexed = bool(_given(field, "index")) or bool(_given(field, "unique"))
    max_length = _metadata_value(field, "max_length")
    plain = not field.metadata
    validation: Any = base
    check: Callable[[Any], Any] | None = None
    exact: frozenset[type] = frozenset()
    column: sa.types.TypeEngine[Any]
    _check_field_name(model, name)
    column_kwargs = _given(field, "sa_column_kwargs") or {}
    if _given(field, "unique") or column_kwargs.get("unique"):
        raise _refuse(model, name, "unique=True is not supported on row fields: the file "
                                   "store cannot enforce it, and MariaDB/MySQL would index "
                                   "long text by a prefix (distinct values sharing their "
                                   "first 255 characters would collide); declare "
                                   "index=True and check uniqueness in your code")
    if not isinstance(base, type):
        raise _refuse(model, name, f"the annotation {annotation_name(field.annotation)} is "
                                   "not in the map")
    if max_length is not None and not (base is str or base is bytes):
        raise _refuse(model, name, "max_length applies to str and bytes fields only")
    if issubclass(base, enum.Flag):
        kind = "flag"
        bad = [m for m, v in base.__members__.items()
               if not isinstance(v.value, int) or not 0 <= v.value <= INT64_MAX]
        if bad:
            raise _refuse(model, name, f"flag member {bad[0]!r} of {base.__name__} has a "
                                       "value that is not an integer from 0 to 2**63-1 (flags "
                                       "are stored as their integer)")
        column, check = FlagValue(base), _check_flag
    elif issubclass(base, enum.Enum):
        kind = "enum"
        long = [m for m in base.__members__ if len(m) > ENUM_LENGTH]
        if long:
            raise _refuse(model, name, f"member name {long[0][:40]!r}... is longer than "
                                       f"{ENUM_LENGTH} characters")
        column = EnumName(base)
    elif base is bool:
        kind, column = "bool", sa.Boolean()
        exact = frozenset({bool}) if plain else exact
    elif base is int:
        kind, column, check = "int", sa.BigInteger(), _check_int
        exact = frozenset({int}) if plain else exact
    elif base is float:
        kind, column, check = "float", sa.Double(), _check_float
        exact = frozenset({float}) if plain else exact
    elif base is str:
        kind, column = "str", Text(max_length)
        check = _check_indexed_text if indexed else _check_text
        exact = frozenset({str}) if plain else exact
    elif base is bytes:
        kind, column = "bytes", Bytes()

        def check(value: bytes, indexed: bool = indexed) -> bytes:
            return _check_bytes(value, indexed)

        exact = frozenset({bytes}) if plain else exact
    elif base is dt.datetime:
        kind, column, check = "datetime", UtcDateTime(), _check_datetime
        validation = AwareDatetime
        exact = frozenset({dt.datetime}) if plain else exact  # naive ones: the check refuses
    elif base is dt.date:
        kind, column = "date", sa.Date()
        exact = frozenset({dt.date}) if plain else exact
    elif base is Decimal:
        kind = "decimal"
        digits = _metadata_value(field, "max_digits")
        places = _metadata_value(field, "decimal_places")
        if digits is None or places is None:
            raise _refuse(model, name, "a Decimal field needs max_digits (at most "
                                       f"{DECIMAL_MAX_DIGITS}) and decimal_places")
        if not 0 < digits <= DECIMAL_MAX_DIGITS or not 0 <= places <= digits:
            raise _refuse(model, name, f"a Decimal field needs 0 < max_digits <= "
                                       f"{DECIMAL_MAX_DIGITS} and 0 <= decimal_places <= "
                                       f"max_digits (got {digits}, {places})")
        column, check = ScaledDecimal(digits, places), _decimal_check(places)
    elif base is uuid.UUID:
        kind, column = "uuid", PortableUuid()
        exact = frozenset({uuid.UUID}) if plain else exact
    else:
        raise _refuse(model, name, f"the annotation {annotation_name(field.annotation)} is "
                                   "not in the map")
    if _given(field, "sa_type") is not None or _given(field, "sa_column") is not None:
        raise _refuse(model, name, "sa_type/sa_column are not taken for row fields: "
                                   "typedstore chooses the column type from the annotation "
                                   "so that it means the same on every backend")
    condition = _condition_policy(kind, base, validation, check, max_length, indexed, field)
    if nullable:
        validation = validation | None
    return FieldType(name, kind, base, nullable, indexed, column, validation, check, exact,
                     condition)


def field_types(model: type, skip: typing.Container[str] = ()) -> dict[str, FieldType]:
    """The :class:`FieldType` of every field of row model ``model`` but ``skip``
    (the base columns); checked once per model, on its first use."""
    cached = _cache.get(model)
    if cached is None:
        fields: dict[str, FieldInfo] = getattr(model, "model_fields", {})
        cached = {name: field_type(model, name, field) for name, field in fields.items()
                  if name not in skip}
        _cache[model] = cached
    return cached


__all__ = [
    "Bytes", "EnumName", "FieldType", "FlagValue", "PortableUuid", "Refused", "ScaledDecimal",
    "Text", "UtcDateTime", "annotation_name", "check_state", "condition_value", "field_types",
    "mysql_table_options", "pattern_value", "refuse",
]
