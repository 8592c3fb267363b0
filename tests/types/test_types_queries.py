"""Queries mean the same on every backend: text order, NULL order, LIKE and its
relatives, condition values checked by the type map; flags, field names, unique
fields and server defaults (issue 11, from a new user's attack)."""

from __future__ import annotations

import datetime as dt
import enum
import math
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import typedstore
from tests.types.query_models import (
    LONG_NAME,
    Bits,
    DefaultRow,
    FlagRow,
    LongNameRow,
    Perm,
    WordRow,
)
from tests.types.typed_models import Color, Execution, Mode, Thing, TypedRow, aware
from typedstore import GET, QueryError, SchemaError, Store, StoreRow, extracted, make_store

OpenAll = Callable[..., dict[str, Store]]

#: Mixed case, accents (composed and not), trailing spaces, punctuation, non-BMP.
WORDS = ["b", "B", "a", "A", "a ", "a  ", "á", "Á", "a\u0301", "Z", "z", "_", "%", "ä",
         "ab", "aB", "Ab", "", " ", "~", "😀", "\u00a0", "ẞ", "ß", "0", "9"]


def save_words(store: Store, words: list[str]) -> None:
    with store.transaction():
        for i, word in enumerate(words):
            thing = Thing(word=word, note=word, short=word, n=i)
            thing.execution = Execution(state=word or "EMPTY")
            store.save(thing)


def words_of(rows: Any) -> list[str]:
    return [r.word for r in rows]


# ---------------------------------------------------------------- text order


def test_text_orders_and_ranges_by_code_point_on_all_four(open_all: OpenAll) -> None:
    """ORDER BY and range conditions give Python's str order (code points) on every
    backend, for str fields with and without max_length and for ``state``."""
    for name, store in open_all(row_model=WordRow).items():
        save_words(store, WORDS)
        for field in ("word", "note", "short"):
            column = getattr(WordRow, field)
            up = words_of(store.query().order_by(column))  # type: ignore[attr-defined]
            assert up == sorted(WORDS), (name, field)
            down = words_of(store.query().order_by(column.desc()))  # type: ignore[attr-defined]
            assert down == sorted(WORDS, reverse=True), (name, field)
            found = words_of(store.query(column > "a", column <= "á").order_by(column))  # type: ignore[attr-defined]
            assert found == sorted(w for w in WORDS if "a" < w <= "á"), (name, field)
            between = words_of(store.query(column.between("A", "a ")).order_by(column))  # type: ignore[attr-defined]
            assert between == sorted(w for w in WORDS if "A" <= w <= "a "), (name, field)
        states = [r.state for r in store.query().order_by(WordRow.state)]  # type: ignore[attr-defined]
        assert states == sorted(w or "EMPTY" for w in WORDS), name
        ranged = [r.state for r in store.query(WordRow.state >= "a").order_by("state")]  # type: ignore[attr-defined]
        assert ranged == sorted(w for w in WORDS if w >= "a"), name


def test_postgresql_database_with_a_linguistic_collation(pg_base_url: str) -> None:
    """A PostgreSQL database whose default collation is ICU's en-US (case-insensitive
    first, accents second): text fields and ``state`` still order and compare by code
    point."""
    admin = sa.create_engine(pg_base_url, isolation_level="AUTOCOMMIT")
    database = f"types_icu_{uuid.uuid4().hex[:8]}"
    try:
        with admin.connect() as conn:
            try:
                conn.execute(sa.text(
                    f'CREATE DATABASE "{database}" TEMPLATE template0 ENCODING \'UTF8\' '
                    "LOCALE 'C.UTF-8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"))
            except sa.exc.DBAPIError as exc:
                pytest.skip(f"this PostgreSQL cannot make an ICU database: {exc}")
        url = sa.make_url(pg_base_url).set(database=database, query={}).render_as_string(
            hide_password=False)
        store = make_store(f"{url}#table=jobs", row_model=WordRow)
        try:
            with store.engine.connect() as conn:  # type: ignore[attr-defined]
                # The premise: the server's own order is not the code point order.
                own = conn.execute(sa.text(
                    "SELECT w FROM (VALUES ('b'), ('B'), ('a'), ('A')) v(w) ORDER BY w"
                )).scalars().all()
                assert own != sorted(own)
            save_words(store, WORDS)
            assert words_of(store.query().order_by(WordRow.word)) == sorted(WORDS)  # type: ignore[attr-defined]
            states = [r.state for r in store.query().order_by(WordRow.state.desc())]  # type: ignore[attr-defined]
            assert states == sorted((w or "EMPTY" for w in WORDS), reverse=True)
            ranged = [r.state for r in store.query(WordRow.state < "a")]  # type: ignore[attr-defined]
            assert sorted(ranged) == sorted(w or "EMPTY" for w in WORDS if (w or "EMPTY") < "a")
            assert store.query(WordRow.state == "a").count() == 1  # type: ignore[attr-defined]
        finally:
            store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()


# ---------------------------------------------------------------- NULL order


def test_nulls_are_the_smallest_value_on_all_four(open_all: OpenAll) -> None:
    """NULL first in ascending order, last in descending, on every backend;
    nulls_first()/nulls_last() choose otherwise, also where the backend has no NULLS
    clause (MariaDB)."""
    values = [3, None, 1, None, 2]
    results: dict[str, list[list[Any]]] = {}
    for name, store in open_all(row_model=WordRow).items():
        with store.transaction():
            for i, value in enumerate(values):
                store.save(Thing(word=None if value is None else str(value), n=value,
                                 x=None if value is None else value / 2, note=str(i)))

        def order(*terms: Any, store: Store = store) -> list[Any]:
            return [(r.n, r.note) for r in store.query().order_by(*terms, WordRow.note)]  # type: ignore[attr-defined]

        results[name] = [
            order(WordRow.n), order(WordRow.n.desc()), order(WordRow.x),
            order(WordRow.word.desc()), order("n"),
            order(WordRow.n.asc().nulls_last()), order(WordRow.n.desc().nulls_first()),
            order(WordRow.n.nulls_last()), order(WordRow.x.desc().nulls_last()),
        ]
    nulls = [(None, "1"), (None, "3")]
    up = [(1, "2"), (2, "4"), (3, "0")]
    expected = [nulls + up, up[::-1] + nulls, nulls + up, up[::-1] + nulls, nulls + up,
                up + nulls, nulls + up[::-1], up + nulls, up[::-1] + nulls]
    for name, got in results.items():
        assert got == expected, name


# ---------------------------------------------------------------- LIKE and relatives

PATTERN_WORDS = ["abc", "ABC", "aBc", "Ábc", "ábc", "a%c", "a_c", "abc%", "x/y", "xay",
                 "ab\\c", "AB_", "ab_"]


def test_like_family_means_the_same_on_all_four(open_all: OpenAll) -> None:
    """like/startswith/endswith/contains are case-sensitive; ilike & co. ignore the
    case of A-Z only; '%' and '_' in startswith/endswith/contains are literal."""
    w = WordRow.word
    cases: dict[str, tuple[Any, set[str]]] = {
        "like": (w.like("a%"), {"abc", "aBc", "a%c", "a_c", "abc%", "ab\\c", "ab_"}),
        "like upper": (w.like("A%"), {"ABC", "AB_"}),
        "like wildcard _": (w.like("a_c"), {"abc", "aBc", "a%c", "a_c"}),
        "like case": (w.like("%B%"), {"ABC", "aBc", "AB_"}),
        "not like": (w.notlike("a%"), set(PATTERN_WORDS) - {
            "abc", "aBc", "a%c", "a_c", "abc%", "ab\\c", "ab_"}),
        "startswith": (w.startswith("ab"), {"abc", "abc%", "ab\\c", "ab_"}),
        "startswith %": (w.startswith("a%"), {"a%c"}),
        "startswith _": (w.startswith("a_"), {"a_c"}),
        "endswith _": (w.endswith("_"), {"AB_", "ab_"}),
        "endswith %": (w.endswith("c%"), {"abc%"}),
        "contains %": (w.contains("%"), {"a%c", "abc%"}),
        "contains /": (w.contains("/"), {"x/y"}),
        "contains \\": (w.contains("\\"), {"ab\\c"}),
        "contains a": (w.contains("a"), {"abc", "aBc", "a%c", "a_c", "abc%", "xay",
                                         "ab\\c", "ab_"}),
        "not startswith": (~w.startswith("a"), {"ABC", "Ábc", "ábc", "x/y", "xay", "AB_"}),
        "autoescape": (w.startswith("a_", autoescape=True), {"a_c"}),
        "ilike": (w.ilike("abc"), {"abc", "ABC", "aBc"}),
        "ilike %": (w.ilike("ab%"), {"abc", "ABC", "aBc", "abc%", "ab\\c", "AB_", "ab_"}),
        "ilike accent": (w.ilike("ábc"), {"ábc"}),
        "not ilike": (w.not_ilike("ABC"), set(PATTERN_WORDS) - {"abc", "ABC", "aBc"}),
        "istartswith": (w.istartswith("AB_"), {"AB_", "ab_"}),
        "iendswith": (w.iendswith("BC"), {"abc", "ABC", "aBc", "Ábc", "ábc"}),
        "icontains": (w.icontains("B_"), {"AB_", "ab_"}),
        "state": (WordRow.state.startswith("ab"), {"abc", "abc%", "ab\\c", "ab_"}),
        "state ilike": (WordRow.state.ilike("AB%"), {"abc", "ABC", "aBc", "abc%", "ab\\c",
                                                     "AB_", "ab_"}),
        "enum name": (WordRow.mode.startswith("FA"), {"abc"}),
        "enum ilike": (WordRow.mode.ilike("sl%"), {"ABC"}),
        # A backslash escapes the next character in like and ilike, everywhere.
        "like backslash": (w.like("ab\\\\c"), {"ab\\c"}),
        "like escaped %": (w.like("abc\\%"), {"abc%"}),
        "like escaped _": (w.like("ab\\_"), {"ab_"}),
        "like escaped letter": (w.like("a\\bc"), {"abc"}),
        "ilike escaped _": (w.ilike("AB\\_"), {"AB_", "ab_"}),
        "like other escape": (w.like("ab!_", escape="!"), {"ab_"}),
    }
    for name, store in open_all(row_model=WordRow).items():
        with store.transaction():
            for word in PATTERN_WORDS:
                thing = Thing(word=word, mode={"abc": Mode.FAST, "ABC": Mode.SLOW}.get(word))
                thing.execution = Execution(state=word)
                store.save(thing)
        for case, (condition, expected) in cases.items():
            got = set(words_of(store.query(condition)))  # type: ignore[attr-defined]
            assert got == expected, (name, case)
        for trailing in (w.like("ab\\"), w.ilike("%\\\\\\"), w.not_like("\\")):
            with pytest.raises(QueryError, match="escape character"):
                store.query(trailing).ids()  # type: ignore[attr-defined]


def test_sqlite_like_is_case_sensitive_on_store_connections(tmp_path: Any) -> None:
    """SQLite's LIKE ignores ASCII case unless PRAGMA case_sensitive_like is on, which
    every store connection sets (the file store's index too)."""
    store = make_store(f"sqlite:///{tmp_path / 's.db'}#table=t", row_model=WordRow)
    try:
        with store.engine.connect() as conn:  # type: ignore[attr-defined]
            assert conn.execute(sa.text("SELECT 'a' LIKE 'A', 'a' LIKE 'a'")).one() == (0, 1)
    finally:
        store.close()


# ---------------------------------------------------------------- condition values


def test_condition_values_are_coerced_as_saves_are(open_all: OpenAll) -> None:
    """A value is validated as the field's type before the query runs: text for an
    int field, a Decimal for a float field, a float for a Decimal field, an enum's
    value, an IntEnum member, aware ISO text, a hex UUID."""

    class Level(enum.IntEnum):
        LOW = 5

    when = aware(2021, 6, 1, 8, offset_minutes=90)
    conditions = [
        TypedRow.i == "5", TypedRow.i == Level.LOW, TypedRow.i.in_(["5", 6]),
        TypedRow.i.between("4", 6.0), TypedRow.i.between(4, 6) & (TypedRow.i != "4"),
        TypedRow.f == Decimal("2.5"), TypedRow.f > Decimal("2.4"),
        TypedRow.m == 1.25, TypedRow.m < Decimal("1.250001"), TypedRow.m > 1.249999,
        TypedRow.m == Decimal("1.25000000"),  # trailing zeros: still 6 places
        TypedRow.c == 2, TypedRow.c == Color.GREEN, TypedRow.e == "slow",
        TypedRow.t == when.isoformat(), TypedRow.t >= "2021-06-01T06:30:00Z",
        TypedRow.u == uuid.UUID(int=7).hex, TypedRow.b == "yes", TypedRow.d == "2020-02-29",
        TypedRow.s8 == "12345678",
    ]
    for name, store in open_all(row_model=TypedRow).items():
        store.save(Thing(batch=0, n=0, req="", i=5, f=2.5, m=Decimal("1.25"), c=Color.GREEN,
                         e=Mode.SLOW, t=when, u=uuid.UUID(int=7), b=True,
                         d=dt.date(2020, 2, 29), s8="12345678"))
        for condition in conditions:
            assert store.query(condition).count() == 1, (name, str(condition))  # type: ignore[attr-defined]


REFUSED_CONDITIONS: dict[str, tuple[Callable[[], Any], str, str]] = {
    "nan": (lambda: TypedRow.f == math.nan, "f", "not a finite number"),
    "inf": (lambda: TypedRow.f > -math.inf, "f", "not a finite number"),
    "naive": (lambda: TypedRow.t == dt.datetime(2020, 1, 1), "t", "naive datetime"),
    "naive text": (lambda: TypedRow.t < "2020-01-01T00:00:00", "t", "naive datetime"),
    "overlong": (lambda: TypedRow.s8 == "123456789", "s8", "at most 8"),
    "int64": (lambda: TypedRow.i == 2**63, "i", "64-bit"),
    "int64 in list": (lambda: TypedRow.i.in_([1, -(2**63) - 1]), "i", "64-bit"),
    "nul": (lambda: TypedRow.s == "a\x00", "s", "NUL"),
    "nul state": (lambda: TypedRow.state == "a\x00", "state", "NUL"),
    "surrogate": (lambda: TypedRow.sx.startswith("\ud800"), "sx", "surrogate"),
    "not a member": (lambda: TypedRow.c == 99, "c", "not valid"),
    "not a uuid": (lambda: TypedRow.u == "not-a-uuid", "u", "not valid"),
    "not a number": (lambda: TypedRow.n > "many", "n", "not valid"),
    "decimal digits": (lambda: TypedRow.m > Decimal("1e12"), "m", "integer digits"),
    "decimal nan": (lambda: TypedRow.m == Decimal("NaN"), "m", ""),
    "decimal places": (lambda: TypedRow.m < Decimal("1.2500001"), "m", "decimal places"),
    "pattern not text": (lambda: TypedRow.s.like(5), "s", "not text"),
    "keyword": (lambda: {"i": 2**64}, "i", "64-bit"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CONDITIONS))
def test_values_a_column_can_never_hold_are_refused_the_same_everywhere(
        open_all: OpenAll, case: str) -> None:
    make, field, words = REFUSED_CONDITIONS[case]
    messages = set()
    for name, store in open_all(row_model=TypedRow).items():
        store.save(Thing(batch=0, n=0, req=""))
        condition = make()
        with pytest.raises(QueryError) as info:
            if isinstance(condition, dict):
                store.query(**condition)  # type: ignore[attr-defined]
            else:
                store.query(condition)  # type: ignore[attr-defined]
        error = info.value
        assert error.field == field, name
        assert f"field {field!r}" in str(error) and words in str(error), (name, str(error))
        assert isinstance(error, ValueError) and isinstance(error, typedstore.StoreError)
        messages.add(str(error))
        assert store.query(TypedRow.n == 0).count() == 1  # type: ignore[attr-defined]
    assert len(messages) == 1, messages  # the same words on every backend


# ---------------------------------------------------------------- flags


def test_flags_round_trip_and_compare_on_all_four(open_all: OpenAll) -> None:
    values = [Perm.R | Perm.W, Perm(0), None, Perm.X, Perm.R | Perm.W | Perm.X]
    for name, store in open_all(row_model=FlagRow).items():
        with store.transaction():
            for i, value in enumerate(values):
                store.save(Thing(p=value, b=Bits.A | Bits.B if i == 0 else None))
            store.save(Thing(p=6))  # the integer of R|W, validated into the flag
        rows = store.query().rows()  # type: ignore[attr-defined]
        assert [r.p for r in rows] == [*values, Perm.R | Perm.W], name
        assert all(type(r.p) is Perm for r in rows if r.p is not None), name
        assert [r.q for r in rows] == [Perm.R] * 6, name
        assert rows[0].b == Bits.A | Bits.B and type(rows[0].b) is Bits, name
        assert store.query(FlagRow.p == Perm.R | Perm.W).count() == 2, name  # type: ignore[attr-defined]
        has_w = store.query(FlagRow.p.op("&")(Perm.W) != 0).count()  # type: ignore[attr-defined]
        assert has_w == 3, name
        assert [r.p for r in store.query(FlagRow.p > Perm.X).order_by(FlagRow.p)] == [  # type: ignore[attr-defined]
            Perm.R | Perm.W, Perm.R | Perm.W, Perm.R | Perm.W | Perm.X], name
        with pytest.raises(typedstore.SaveError, match="'p'"):
            store.save(Thing(p="rw"))
        with pytest.raises(QueryError, match="'p'"):
            store.query(FlagRow.p == "rw")  # type: ignore[attr-defined]


# ---------------------------------------------------------------- declarations refused


def test_annotation_sqlmodel_cannot_map_is_refused_naming_model_and_field() -> None:
    with pytest.raises(SchemaError) as info:
        type("ListRow", (StoreRow,), {
            "__tablename__": "types_q_list", "__annotations__": {"tags": list[int]},
            "tags": extracted(GET.tags), "__module__": __name__,
        }, table=True)
    message = str(info.value)
    assert "row model ListRow, field 'tags'" in message and "list[int]" in message
    assert "docs/types.md" in message


def test_unique_fields_are_refused_on_every_backend(tmp_path: Any) -> None:
    for i, field in enumerate([extracted(GET.key, unique=True),
                               extracted(GET.key, index=True, unique=True),
                               extracted(GET.key, sa_column_kwargs={"unique": True})]):
        model = type(f"UniqueRow{i}", (StoreRow,), {
            "__tablename__": f"types_q_unique{i}", "__annotations__": {"key": str | None},
            "key": field, "__module__": __name__,
        }, table=True)
        for location in (f"sqlite:///{tmp_path / 'x.db'}#table=t{i}", str(tmp_path / f"j{i}")):
            with pytest.raises(SchemaError, match=f"UniqueRow{i}, field 'key'.*unique=True"):
                make_store(location, row_model=model)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert sa.inspect(engine).get_table_names() == []  # refused before anything was made
    engine.dispose()


def test_field_names_over_63_bytes_are_refused_on_every_backend(tmp_path: Any) -> None:
    for name in ("x" * 64, "é" * 31 + "xy"):
        model = type(f"LongRow{len(name)}", (StoreRow,), {
            "__tablename__": f"types_q_long{len(name)}", "__annotations__": {name: int | None},
            name: extracted(GET.value), "__module__": __name__,
        }, table=True)
        with pytest.raises(SchemaError) as info:
            make_store(f"sqlite:///{tmp_path / 'x.db'}#table=t", row_model=model)
        message = str(info.value)
        assert f"field {name!r}" in message and "64 bytes" in message
        assert "at most 63" in message


def test_a_63_byte_field_name_and_its_index_work_on_all_four(open_all: OpenAll) -> None:
    for name, store in open_all(row_model=LongNameRow).items():
        store.save(Thing(value=5))
        column = getattr(LongNameRow, LONG_NAME)
        assert [getattr(r, LONG_NAME) for r in store.query(column == 5)] == [5], name  # type: ignore[attr-defined]
        if name != "file":
            assert typedstore.drift(str(store.url), row_model=LongNameRow) == [], name  # type: ignore[attr-defined]
            indexes = sa.inspect(store.engine).get_indexes(store.table_name)  # type: ignore[attr-defined]
            assert any(ix["column_names"] == [LONG_NAME] for ix in indexes), name
            assert all(len(str(ix["name"]).encode()) <= 63 for ix in indexes), name


# ---------------------------------------------------------------- server defaults


def test_defaults_are_stored_as_given_for_rows_written_without_the_column(
        open_all: OpenAll) -> None:
    """A required field's default is its column's server default (GC3Pie's INSERTs do
    not know the column): text with '%', quotes and a backslash is stored as it is,
    an enum as its name, a flag as its integer."""
    for name, store in open_all(row_model=DefaultRow).items():
        if name == "file":
            continue
        table = store.table_name  # type: ignore[attr-defined]
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            rows = sa.table(table, sa.column("id"), sa.column("state"))
            conn.execute(sa.insert(rows).values(id=10**6, state="X"))
        [row] = store.query().rows()  # type: ignore[attr-defined]
        assert row.note == "100% _done_ %s %(x)s 'q' \\", name
        assert row.mode is Mode.FAST and row.perm == Perm.R | Perm.W, name


def test_true_and_false_compared_with_values(open_all: OpenAll) -> None:
    """`col == True` is the constant true to SQLAlchemy, not a bound value: it
    is checked and bound as the field stores True (1 in an int field, as a
    save does), the same on all four backends."""
    for name, store in open_all(row_model=TypedRow).items():
        with store.transaction():
            for n in (0, 1, 2):
                store.save(Thing(batch=0, n=n, req="r", k=0))
        ones = store.query(TypedRow.n == True).ids()  # type: ignore[attr-defined]  # noqa: E712
        zeros = store.query(TypedRow.n == False).ids()  # type: ignore[attr-defined]  # noqa: E712
        keyword = store.query(n=True).ids()  # type: ignore[attr-defined]
        assert (len(ones), len(zeros), len(keyword)) == (1, 1, 1), name
        assert store.load(ones[0]).n == 1 and store.load(zeros[0]).n == 0, name
