"""Row models and objects of the type-map tests (importable as ``tests.types.typed_models``).

Row models are SQLModel table classes sharing one global ``MetaData``: each has a
``__tablename__`` unique in the test suite (prefixed ``types_``); stores copy their
columns into tables of their own.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Any

from typedstore import GET, Persistable, StoreRow, extracted


class Color(enum.Enum):
    """A plain Enum (stored by member name)."""

    RED = 1
    GREEN = 2
    Blue = 3


class Mode(str, enum.Enum):
    """A str Enum (``enum.StrEnum`` is Python 3.11+)."""

    FAST = "fast"
    SLOW = "slow"
    fast = "FAST"  # a name equal to another member's value, in other case


class Thing(Persistable):
    """An object with whatever attributes a test gives it."""

    def __init__(self, **attrs: Any) -> None:
        for key, value in attrs.items():
            setattr(self, key, value)


class Execution:
    """``obj.execution`` (a plain object: not a record of its own)."""

    def __init__(self, state: str) -> None:
        self.state = state


class TypedRow(StoreRow, table=True):
    """One field of every kind the type map covers (the property test's model)."""

    __tablename__ = "types_typed"

    batch: int = extracted(GET.batch, index=True)
    n: int = extracted(GET.n)
    i: int | None = extracted(GET.i)
    f: float | None = extracted(GET.f)
    b: bool | None = extracted(GET.b)
    s: str | None = extracted(GET.s)
    sx: str | None = extracted(GET.sx, index=True)
    s8: str | None = extracted(GET.s8, max_length=8, index=True)
    by: bytes | None = extracted(GET.by)
    t: dt.datetime | None = extracted(GET.t, index=True)
    d: dt.date | None = extracted(GET.d)
    m: Decimal | None = extracted(GET.m, max_digits=18, decimal_places=6)
    c: Color | None = extracted(GET.c)
    e: Mode | None = extracted(GET.e)
    u: uuid.UUID | None = extracted(GET.u)
    req: str = extracted(GET.req)
    k: int = extracted(GET.k, default=7)


#: The typed fields of :class:`TypedRow` and their kinds.
FIELDS = {
    "i": "int", "f": "float", "b": "bool", "s": "str", "sx": "str", "s8": "str",
    "by": "bytes", "t": "datetime", "d": "date", "m": "decimal", "c": "enum", "e": "enum",
    "u": "uuid", "req": "str", "k": "int",
}


class FloatRow(StoreRow, table=True):
    """The issue's first report: a Unix timestamp in a float field."""

    __tablename__ = "types_float"

    submitted: float | None = extracted(GET.submitted)
    jobname: str | None = extracted(GET.jobname)


class RequiredRow(StoreRow, table=True):
    """Required fields (no default, not optional): NOT NULL columns of a new table."""

    __tablename__ = "types_required"

    jobname: str = extracted(GET.jobname)
    cores: int = extracted(GET.requested_cores, index=True)
    when: dt.datetime = extracted(GET.when)
    mode: Mode = extracted(GET.mode, default=Mode.SLOW)
    ok: bool = extracted(GET.ok, default=True)


class TextRow(StoreRow, table=True):
    """Text only: for databases with other default character sets."""

    __tablename__ = "types_text"

    jobname: str | None = extracted(GET.jobname, index=True)
    note: str | None = extracted(GET.note)
    short: str | None = extracted(GET.short, max_length=20)


def aware(*args: int, offset_minutes: int = 0) -> dt.datetime:
    """An aware datetime at a fixed UTC offset."""
    return dt.datetime(*args, tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes)))


UTC = dt.timezone.utc


def normalised(kind: str, value: Any) -> Any:
    """What the type map stores for a valid ``value`` of a field of ``kind`` (the
    test oracle, written from docs/types.md, not from typedstore's code)."""
    if value is None:
        return None
    if kind == "float":
        return 0.0 if value == 0 else float(value)
    if kind == "datetime":
        return value.astimezone(UTC)
    if kind == "decimal":
        value = Decimal(value).quantize(Decimal("0.000001"))
        return abs(value) if value == 0 else value
    return value


def order_key(kind: str, value: Any) -> Any:
    """How the backends order stored values of ``kind`` (enums: by member name)."""
    if kind == "enum":
        return value.name
    return value


__all__ = ["FIELDS", "Color", "Execution", "Mode", "Thing", "TypedRow", "aware", "normalised",
           "order_key"]
