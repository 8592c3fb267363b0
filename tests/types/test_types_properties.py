"""Property test of the type map on all four backends at once.

Hypothesis generates records of :class:`~tests.types.typed_models.TypedRow` (every
kind the map covers, with the policy's edge values: 64-bit extremes, subnormal and
huge floats, -0.0, empty, long and non-BMP text, case and trailing-space variants of
the same text, aware datetimes in several zones with microseconds, ...). Each example
is saved on SQLite, PostgreSQL, MariaDB and the file store, and:

* the rows read back are equal to what the type map promises (docs/types.md), hence
  equal on all four;
* equality and range queries with values of the example (and fresh ones) return the
  same records on all four, the ones Python's own comparisons select;
* a refused value (NaN, NUL, a lone surrogate, an integer beyond 64 bits, a naive
  datetime, ``None`` in a required field, text too long...) is the same
  ``SaveError`` on all four and leaves the stored rows unchanged.

Bounded (:data:`EXAMPLES` examples, each on the four backends) so it runs in about a
minute; ``TYPEDSTORE_PROPERTY_EXAMPLES`` (or ``TYPEDSTORE_STRESS=full``: 200) raises it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import operator
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.stress import size
from tests.types.typed_models import FIELDS, Color, Mode, Thing, TypedRow, normalised, order_key
from typedstore import QueryError, SaveError, Store

OpenAll = Callable[..., dict[str, Store]]

#: Generated examples; each one is saved and queried on all four backends.
EXAMPLES = size(25, 200, "TYPEDSTORE_PROPERTY_EXAMPLES")

INT64 = (-(2**63), 2**63 - 1)


def _zones() -> list[dt.tzinfo]:
    zones: list[dt.tzinfo] = [
        dt.timezone.utc, dt.timezone(dt.timedelta(hours=14)),
        dt.timezone(-dt.timedelta(hours=12)), dt.timezone(dt.timedelta(hours=5, minutes=45)),
    ]
    try:
        from zoneinfo import ZoneInfo

        zones += [ZoneInfo(name) for name in ("Europe/Zurich", "America/Los_Angeles",
                                              "Australia/Lord_Howe")]
    except Exception:  # no time zone database: the fixed offsets still cover it
        pass
    return zones


ZONES = _zones()

# ---------------------------------------------------------------- strategies: valid values

#: Any Unicode text a database stores: no NUL, no lone surrogate.
chars = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
short_text = st.text(chars, max_size=12)


def variants(text: str) -> list[str]:
    """The same text in other case and with spaces around: distinct values."""
    return [text, text.upper(), text.lower(), text.swapcase(), text + " ", " " + text,
            text + "  "]


@st.composite
def text_pool(draw: st.DrawFn) -> list[str]:
    """A few texts and their variants, so records share, nearly share, or differ."""
    bases = draw(st.lists(short_text, min_size=1, max_size=3))
    return [v for base in bases for v in variants(base)]


long_text = st.builds(operator.mul, st.text(chars, min_size=1, max_size=4),
                      st.integers(500, 20000))
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308,
                     1.7976931348623157e308, -1.7976931348623157e308, 1700000000.123456,
                     0.1, 1 / 3]),
)
ints = st.one_of(st.integers(*INT64), st.sampled_from([INT64[0], INT64[1], 0, -1, 2**53 + 1]))
datetimes = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
                         timezones=st.sampled_from(ZONES))
decimals = st.decimals(min_value=Decimal("-999999999999.999999"),
                       max_value=Decimal("999999999999.999999"), places=6,
                       allow_nan=False, allow_infinity=False)
binaries = st.one_of(st.binary(max_size=40),
                     st.builds(operator.mul, st.binary(min_size=1, max_size=3),
                               st.integers(100, 5000)))
uuids = st.one_of(st.uuids(), st.sampled_from([uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]))


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


@st.composite
def record(draw: st.DrawFn, pool: list[str]) -> dict[str, Any]:
    pooled = st.sampled_from(pool)
    return {
        "i": draw(optional(ints)),
        "f": draw(optional(floats)),
        "b": draw(optional(st.booleans())),
        "s": draw(optional(st.one_of(pooled, short_text, long_text))),
        "sx": draw(optional(st.one_of(pooled, st.text(chars, max_size=500)))),
        "s8": draw(optional(pooled.filter(lambda s: len(s) <= 8))),
        "by": draw(optional(binaries)),
        "t": draw(optional(datetimes)),
        "d": draw(optional(st.dates())),
        "m": draw(optional(decimals)),
        "c": draw(optional(st.sampled_from(Color))),
        "e": draw(optional(st.sampled_from(Mode))),
        "u": draw(optional(uuids)),
        "req": draw(st.one_of(pooled, short_text)),
        "k": draw(ints),
    }


def fresh_values(pool: list[str]) -> dict[str, st.SearchStrategy[Any]]:
    """Query probes that need not be stored values."""
    return {
        "i": ints, "f": floats, "b": st.booleans(), "s": st.one_of(st.sampled_from(pool),
                                                                  short_text),
        "sx": st.sampled_from(pool), "s8": st.sampled_from(pool), "by": binaries,
        "t": datetimes, "d": st.dates(), "m": decimals, "c": st.sampled_from(Color),
        "e": st.sampled_from(Mode), "u": uuids, "req": st.sampled_from(pool), "k": ints,
    }


# ---------------------------------------------------------------- strategies: refused values

#: field: (bad values, words of the reason)
REFUSED: dict[str, tuple[st.SearchStrategy[Any], str]] = {
    "f": (st.sampled_from([float("nan"), float("inf"), float("-inf")]), "not a finite number"),
    "i": (st.one_of(st.integers(2**63, 2**80), st.integers(-(2**80), -(2**63) - 1)),
          "64-bit integer range"),
    "s": (st.builds(lambda a, b: f"{a}\x00{b}", short_text, short_text), "NUL character"),
    "sx": (st.builds(lambda a, c, b: a + c + b, short_text,
                     st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), short_text),
           "lone surrogate"),
    "t": (st.datetimes(), "naive datetime"),
    "req": (st.none(), "not optional"),
    "k": (st.none(), "not optional"),
    "s8": (st.text(chars, min_size=9, max_size=30), "at most 8 characters"),
    "by": (st.nothing(), ""),  # unindexed bytes: no limit (placeholder, never drawn)
    "m": (st.builds(lambda n: Decimal(n * 10 + 1).scaleb(-7), st.integers(-10**10, 10**10)),
          "no more than 6 decimal places"),
}
REFUSED.pop("by")
REFUSED["sx-long"] = (st.builds(operator.mul, st.characters(min_codepoint=0x800,
                                                            max_codepoint=0xD7FF),
                                st.integers(700, 900)), "an indexed field holds at most")


@st.composite
def example(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[str, Any]],
                                      tuple[str, Any, str] | None]:
    pool = draw(text_pool())
    records = draw(st.lists(record(pool), min_size=1, max_size=5))
    probes = []
    fresh = fresh_values(pool)
    for field in FIELDS:
        stored = [r[field] for r in records if r[field] is not None]
        if stored:
            probes.append((field, draw(st.sampled_from(stored))))
        probes.append((field, draw(fresh[field])))
    refusal = None
    if draw(st.booleans()):
        case = draw(st.sampled_from(sorted(REFUSED)))
        bad, words = REFUSED[case]
        refusal = (case.partition("-")[0], draw(bad), words)
    return records, probes, refusal


# ---------------------------------------------------------------- checking

_batches = itertools.count(1)

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "<": operator.lt, ">=": operator.ge,
}


def same(kind: str, got: Any, expected: Any) -> bool:
    """``got`` is exactly the value the type map promises."""
    if expected is None or got is None:
        return got is expected
    if type(got) is not type(expected) or got != expected:
        return False
    if kind == "float":
        return repr(got) == repr(expected)
    if kind == "datetime":
        return got.utcoffset() == dt.timedelta(0) and got.microsecond == expected.microsecond
    if kind == "decimal":
        return str(got) == str(expected)
    return True


def expected_rows(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {n: {f: normalised(kind, r[f]) for f, kind in FIELDS.items()}
            for n, r in enumerate(records)}


def selected(records: list[dict[str, Any]], field: str, op: str, probe: Any) -> set[int]:
    """What Python's comparisons select (NULLs match no comparison, as in SQL)."""
    kind = FIELDS[field]
    target = order_key(kind, normalised(kind, probe))
    return {n for n, r in enumerate(records) if r[field] is not None
            and OPERATORS[op](order_key(kind, normalised(kind, r[field])), target)}


def probe_refused(field: str, probe: Any) -> bool:
    """A query value the field's column can never hold (docs/types.md, "Queries"):
    text over ``max_length``, indexed text over 2,000 bytes."""
    if field == "s8":
        return len(probe) > 8
    if field == "sx":
        return len(probe.encode("utf-8")) > 2000
    return False


def read_rows(store: Store, batch: int) -> dict[int, Any]:
    rows = store.query(TypedRow.batch == batch).rows()  # type: ignore[attr-defined]
    return {row.n: row for row in rows}


def snapshot(rows: dict[int, Any]) -> dict[int, tuple[str, ...]]:
    """The stored values of rows, exactly (reprs)."""
    return {n: tuple(repr(getattr(row, f)) for f in ("version", *FIELDS))
            for n, row in rows.items()}


def _normalised_message(error: SaveError) -> str:
    return re.sub(r"^object \S+ ", "object ID ", str(error))


@pytest.mark.timeout(600)
def test_the_type_map_means_the_same_on_all_four_backends(open_all: OpenAll) -> None:
    stores = open_all(row_model=TypedRow)

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(example())
    def check(case: tuple[list[dict[str, Any]], list[tuple[str, Any]],
                          tuple[str, Any, str] | None]) -> None:
        records, probes, refusal = case
        batch = next(_batches)
        expected = expected_rows(records)
        saved: dict[str, list[Thing]] = {}
        for name, store in stores.items():
            things = [Thing(batch=batch, n=n, **r) for n, r in enumerate(records)]
            with store.transaction():
                for thing in things:
                    store.save(thing)
            saved[name] = things
            rows = read_rows(store, batch)
            assert sorted(rows) == sorted(expected), name
            for n, values in expected.items():
                for field, value in values.items():
                    got = getattr(rows[n], field)
                    assert same(FIELDS[field], got, value), (name, n, field, got, value)
        for field, probe in probes:
            column = getattr(TypedRow, field)
            ops = ["=="] if FIELDS[field] == "bool" else list(OPERATORS)
            for op in ops:
                want = selected(records, field, op, probe)
                refused = set()
                for name, store in stores.items():
                    try:
                        query = store.query(TypedRow.batch == batch,  # type: ignore[attr-defined]
                                            OPERATORS[op](column, probe))
                    except QueryError as exc:
                        assert exc.field == field, (name, str(exc))
                        refused.add(str(exc))
                        continue
                    got = {row.n for row in query.tuples()}
                    assert got == want, (name, field, op, probe)
                # A value no column of the field can hold: refused alike on all four.
                assert len(refused) == (1 if probe_refused(field, probe) else 0), refused
        if refusal is None:
            return
        field, bad, words = refusal
        messages = {}
        for name, store in stores.items():
            thing = saved[name][0]
            before = read_rows(store, batch)
            setattr(thing, field, bad)
            with pytest.raises(SaveError) as info:
                store.save(thing)
            assert info.value.field == field and words in str(info.value), (name, str(info))
            assert str(info.value.id) in str(info.value)
            messages[name] = _normalised_message(info.value)
            after = read_rows(store, batch)
            assert snapshot(after) == snapshot(before), name
        assert len(set(messages.values())) == 1, messages

    check()
