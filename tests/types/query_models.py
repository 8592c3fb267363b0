"""Row models of the query-semantics tests (importable as ``tests.types.query_models``)."""

from __future__ import annotations

import enum

from typedstore import GET, StoreRow, extracted

from .typed_models import Mode


class Perm(enum.IntFlag):
    """An IntFlag: combinations of members have no member name."""

    R = 4
    W = 2
    X = 1


class Bits(enum.Flag):
    """A plain Flag with integer values."""

    A = enum.auto()
    B = enum.auto()


class WordRow(StoreRow, table=True):
    """Text, nullable numbers and an enum: ordering, NULLs and patterns."""

    __tablename__ = "types_q_words"

    word: str | None = extracted(GET.word, index=True)
    note: str | None = extracted(GET.note)
    short: str | None = extracted(GET.short, max_length=8)
    n: int | None = extracted(GET.n, index=True)
    x: float | None = extracted(GET.x)
    mode: Mode | None = extracted(GET.mode)


class FlagRow(StoreRow, table=True):
    """Flags stored as their integers."""

    __tablename__ = "types_q_flags"

    p: Perm | None = extracted(GET.p)
    q: Perm = extracted(GET.q, default=Perm.R)
    b: Bits | None = extracted(GET.b)


class DefaultRow(StoreRow, table=True):
    """Required fields with defaults: the defaults are the columns' server defaults."""

    __tablename__ = "types_q_defaults"

    note: str = extracted(GET.note, default="100% _done_ %s %(x)s 'q' \\")
    mode: Mode = extracted(GET.mode, default=Mode.FAST)
    perm: Perm = extracted(GET.perm, default=Perm.R | Perm.W)


#: 63 bytes in UTF-8 (31 two-byte letters and one ASCII letter): the longest
#: field name every backend holds.
LONG_NAME = "é" * 31 + "x"


LongNameRow = type("LongNameRow", (StoreRow,), {
    "__tablename__": "types_q_long_name",
    "__annotations__": {LONG_NAME: "int | None"},
    LONG_NAME: extracted(GET.value, index=True),
    "__module__": __name__,
}, table=True)


__all__ = ["LONG_NAME", "Bits", "DefaultRow", "FlagRow", "LongNameRow", "Perm", "WordRow"]
