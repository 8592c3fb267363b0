"""Typed queries over a store's rows.

``store.query(JobRow.state == "RUNNING", JobRow.cores > 8)`` builds a
:class:`Query`: conditions are SQLAlchemy expressions written with the row
model's own attributes (or ``column=value`` keywords). Columns are matched to
the store's table by name, so a row model declared for one table queries any
store built from it. A query can return:

* row-model instances (iterating the query, :meth:`Query.rows`, :meth:`Query.first`),
  without unpickling anything;
* tuples with attribute access by column name, like SQLAlchemy's ``Row``
  (:meth:`Query.tuples`), the cheapest form;
* the loaded objects (:meth:`Query.objects`), through the store's identity map;
* ids (:meth:`Query.ids`) or a count (:meth:`Query.count`).

A query means the same on every backend: text orders by code point, NULL is
the smallest value, ``like``/``startswith``/``contains`` are case-sensitive and
``ilike`` & co. fold A-Z only, ``%``/``_`` are literal in ``startswith``,
``endswith`` and ``contains``, and values compared with a row field pass the
type map's value policy (:class:`~typedstore.errors.QueryError` otherwise);
see "portable semantics" below and docs/types.md, "Queries".

Results stream: rows are fetched :data:`~typedstore.defaults.STREAM_BATCH_SIZE`
at a time (server-side cursors on PostgreSQL and MySQL), so iterating a query
of any size keeps memory flat.
"""

from __future__ import annotations

import enum
import functools
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import operators, visitors
from sqlmodel import SQLModel

from . import typemap
from .errors import QueryError
from .rows import StoreRow


class QuerySource:
    """What a store provides to run queries (mixed into stores that answer them).

    Attributes:
        table (sqlalchemy.Table): the table the rows are in.
        row_model: the SQLModel class rows are returned as (``None``: StoreRow).
    """

    table: sa.Table
    row_model: type[SQLModel] | None

    @abstractmethod
    def _run_select(self, statement: sa.Select[Any], named: bool = True
                    ) -> Iterator[Sequence[Any]]:
        """Stream the rows of ``statement`` in batches (lists of rows), closing
        whatever it opened when the stream ends or is closed.

        ``named``: rows must offer attribute access by column name (as
        SQLAlchemy's ``Row``); otherwise any sequence.
        """

    def _object_columns(self) -> Sequence[sa.ColumnElement[Any]]:
        """Columns :meth:`_load_rows` needs to turn rows into objects."""
        c = self.table.c
        return [c.id, c.data, c.version if "version" in c else sa.null()]

    @abstractmethod
    def _load_rows(self, batches: Iterable[Sequence[Any]]) -> Iterator[Any]:
        """Objects for batches of rows of :meth:`_object_columns`."""

    def _default_order(self) -> list[Any]:
        """Ordering of queries that name none: by id."""
        return [self.table.c.id]

    def _result_columns(self) -> list[sa.Column[Any]]:
        """Columns of returned rows: all but the payload and internal ``_`` columns."""
        return [c for c in self.table.columns if c.name != "data" and not c.name.startswith("_")]


class Query:
    """A lazily run query; every refining method returns a new query.

    Attributes:
        source: the store queried.
    """

    def __init__(
        self,
        source: QuerySource,
        conditions: Iterable[Any] = (),
        equal: Mapping[str, Any] | None = None,
        order: Sequence[Any] = (),
        limit: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.source = source
        table = source.table
        where = [_adapt(cond, table) for cond in conditions]
        for name, value in (equal or {}).items():
            where.append(_adapt(_column(table, name) == value, table))
        self._where = where
        self._order = [_ordering(o, table) for o in order]
        self._limit = limit
        self._offset = offset

    def _copy(self, **changes: Any) -> Query:
        query = Query.__new__(Query)
        query.__dict__.update(self.__dict__)
        query.__dict__.update(changes)
        return query

    # ------------------------------------------------------------ refining

    def where(self, *conditions: Any, **equal: Any) -> Query:
        """This query with more conditions (all must hold).

        Raises :class:`~typedstore.errors.QueryError` naming the field for a value
        the field's column can never hold (NaN, a naive datetime, text over
        ``max_length``...), ``ValueError`` for a column the table lacks,
        ``TypeError`` for a condition that is not a SQL expression."""
        extra = Query(self.source, conditions, equal)._where
        return self._copy(_where=[*self._where, *extra])

    def order_by(self, *columns: Any) -> Query:
        """Order by columns (``JobRow.cores``, ``JobRow.cores.desc()`` or names).

        The same order on every backend: NULL first in ascending order and last
        in descending (``.nulls_first()``/``.nulls_last()`` choose otherwise),
        text by code point (docs/types.md, "Queries")."""
        table = self.source.table
        return self._copy(_order=[_ordering(c, table) for c in columns])

    def limit(self, n: int | None) -> Query:
        return self._copy(_limit=n)

    def offset(self, n: int | None) -> Query:
        return self._copy(_offset=n)

    # ------------------------------------------------------------ running

    def _select(self, columns: Sequence[Any]) -> sa.Select[Any]:
        stmt = sa.select(*columns).where(*self._where)
        order = self._order or self.source._default_order()
        stmt = stmt.order_by(*order)
        if self._limit is not None:
            stmt = stmt.limit(self._limit)
        if self._offset is not None:
            stmt = stmt.offset(self._offset)
        return stmt

    def _batches(self, columns: Sequence[Any], named: bool = False) -> Iterator[Sequence[Any]]:
        return self.source._run_select(self._select(columns), named)

    def tuples(self) -> Iterator[sa.Row[Any]]:
        """Stream rows as tuples with attribute access by column name (SQLAlchemy
        ``Row`` or :class:`ResultRow`), ``data`` left out."""
        for batch in self._batches(self.source._result_columns(), named=True):
            yield from batch

    def __iter__(self) -> Iterator[Any]:
        """Stream row-model instances (``data`` is None: nothing is unpickled),
        with the table's columns outside the row model as extra attributes (see
        :meth:`rows`)."""
        model: Any = self.source.row_model or StoreRow
        # Instances of a table model need its mapper configured, which SQLAlchemy
        # otherwise does lazily on the first ORM operation (no-op once done).
        sa.orm.configure_mappers()
        construct = model.model_construct
        fields = model.model_fields
        extra = [c.name for c in self.source._result_columns() if c.name not in fields]
        if not extra:
            for row in self.tuples():
                yield construct(**row._mapping)
            return
        set_attribute = object.__setattr__
        for row in self.tuples():
            values = dict(row._mapping)
            extras = {name: values.pop(name) for name in extra}
            instance = construct(**values)
            # Pydantic's place for values that are not fields of the model.
            set_attribute(instance, "__pydantic_extra__", extras)
            yield instance

    def rows(self) -> list[Any]:
        """All matching rows as row-model instances.

        A row holds every column :meth:`tuples` returns. Columns of the row
        model (or of :class:`~typedstore.rows.StoreRow` without one) are its
        fields. Columns the table has outside the row model -- GC3Pie
        ``extra_fields`` such as ``jobname`` -- are attributes of the row too
        (``row.jobname``), kept as Pydantic keeps values that are not fields:
        in ``row.model_extra`` (a dict by column name) and the ``repr``. They
        are not validated, and ``row.model_dump()`` lists the row model's
        fields only (the model's schema); use ``{**row.model_dump(),
        **row.model_extra}`` or :meth:`tuples` for every column. The row is
        still an instance of the row model, so code written for the row model
        needs no change.
        """
        return list(self)

    def first(self) -> Any | None:
        """The first matching row, or ``None``."""
        for row in self.limit(1):
            return row
        return None

    def objects(self) -> Iterator[Any]:
        """Stream the stored objects of the matching rows (loaded through the identity map)."""
        return self.source._load_rows(self._batches(self.source._object_columns()))

    def ids(self) -> list[Any]:
        """The ids of the matching rows."""
        from .ids import normalize_id

        # As store.list(): plain ints for SQL stores, Id values for file stores.
        return [r[0] if isinstance(r[0], int) else normalize_id(r[0])
                for batch in self._batches([self.source.table.c.id]) for r in batch]

    def count(self) -> int:
        """How many rows match (ignores ordering; honours limit and offset)."""
        inner = self._select([self.source.table.c.id]).order_by(None).subquery()
        for batch in self.source._run_select(sa.select(sa.func.count()).select_from(inner)):
            return int(batch[0][0])
        raise AssertionError("COUNT returned no row")

    def __repr__(self) -> str:
        return f"<Query {self._select(self.source._result_columns())}>"


class ResultRow(tuple):  # type: ignore[type-arg]
    """A result row read on a driver connection: a tuple with SQLAlchemy ``Row``'s
    attribute access and ``_mapping``."""

    _fields: tuple[str, ...] = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[self._fields.index(name)]
        except ValueError:
            raise AttributeError(name) from None

    @property
    def _mapping(self) -> dict[str, Any]:
        return dict(zip(self._fields, self, strict=True))


@functools.lru_cache(maxsize=256)
def row_class(fields: tuple[str, ...]) -> type[ResultRow]:
    """A :class:`ResultRow` subclass for these column names (one per distinct tuple)."""
    return type("ResultRow", (ResultRow,), {"_fields": tuple(fields), "__slots__": ()})


def _column(table: sa.Table, name: str) -> sa.Column[Any]:
    try:
        return table.c[name]
    except KeyError:
        raise ValueError(
            f"table {table.name!r} has no column {name!r}; columns: {', '.join(table.c.keys())}"
        ) from None


def _as_column(table: sa.Table, item: Any) -> Any:
    return _column(table, item) if isinstance(item, str) else item


# ---------------------------------------------------------------- portable semantics
#
# What a condition or an ordering means is the same on every backend
# (docs/types.md, "Queries"):
#
# * text compares and orders by code point: PostgreSQL's "C" collation (also on a
#   column of a table made with the database's collation), SQLite's BINARY,
#   MariaDB's binary no-pad collation (the type map's columns);
# * NULL is the smallest value: first in ascending order, last in descending
#   (SQLite's and MariaDB's own order; PostgreSQL's is the reverse);
# * like, startswith, endswith, contains are case-sensitive (SQLite through
#   PRAGMA case_sensitive_like, typedstore.defaults.SQLITE_PRAGMAS); ilike and
#   istartswith... ignore the case of the ASCII letters A-Z only (PostgreSQL's
#   lower() under "C", SQLite's lower(), MariaDB's would fold every letter);
# * in startswith, endswith and contains (and their i- forms) '%' and '_' are
#   literal characters; in like and ilike they are the wildcards, and a
#   backslash escapes the character after it (PostgreSQL's and MariaDB's default
#   escape, given to SQLite as ESCAPE '\'); a pattern ending in a lone
#   backslash is refused (QueryError);
# * values compared with a row field are validated as the field's type and
#   refused (QueryError) when the column can never hold them.

_EQUALITY_OPS = frozenset({
    operators.eq, operators.ne, operators.in_op, operators.not_in_op,
    operators.is_distinct_from, operators.is_not_distinct_from,
})
_RANGE_OPS = frozenset({
    operators.lt, operators.le, operators.gt, operators.ge,
    operators.between_op, operators.not_between_op,
})
#: Operators whose value is a pattern, not a column value: LIKE-family
#: operator -> (case-sensitive counterpart, its negation, '%'/'_' literal).
_PATTERN_OPS: dict[Any, tuple[Any, Any, bool]] = {
    operators.like_op: (operators.like_op, operators.not_like_op, False),
    operators.not_like_op: (operators.not_like_op, operators.like_op, False),
    operators.ilike_op: (operators.like_op, operators.not_like_op, False),
    operators.not_ilike_op: (operators.not_like_op, operators.like_op, False),
    operators.startswith_op: (operators.startswith_op, operators.not_startswith_op, True),
    operators.not_startswith_op: (operators.not_startswith_op, operators.startswith_op, True),
    operators.istartswith_op: (operators.startswith_op, operators.not_startswith_op, True),
    operators.not_istartswith_op: (operators.not_startswith_op, operators.startswith_op, True),
    operators.endswith_op: (operators.endswith_op, operators.not_endswith_op, True),
    operators.not_endswith_op: (operators.not_endswith_op, operators.endswith_op, True),
    operators.iendswith_op: (operators.endswith_op, operators.not_endswith_op, True),
    operators.not_iendswith_op: (operators.not_endswith_op, operators.endswith_op, True),
    operators.contains_op: (operators.contains_op, operators.not_contains_op, True),
    operators.not_contains_op: (operators.not_contains_op, operators.contains_op, True),
    operators.icontains_op: (operators.contains_op, operators.not_contains_op, True),
    operators.not_icontains_op: (operators.not_contains_op, operators.contains_op, True),
}
_CASE_INSENSITIVE_OPS = frozenset({
    operators.ilike_op, operators.not_ilike_op, operators.istartswith_op,
    operators.not_istartswith_op, operators.iendswith_op, operators.not_iendswith_op,
    operators.icontains_op, operators.not_icontains_op,
})
#: The escape character of startswith/endswith/contains values (SQLAlchemy's
#: autoescape character).
_ESCAPE = "/"
#: The escape character of like/ilike patterns that name none: the default of
#: PostgreSQL and MariaDB, made explicit for every backend (SQLite has none).
_LIKE_ESCAPE = "\\"


def _is_text(type_: sa.types.TypeEngine[Any]) -> bool:
    """The column holds text (``str`` and enum fields, ``state``): it is
    compared by code point."""
    return issubclass(type_._type_affinity or type(None), sa.String)


class CodePointText(sa.ColumnElement[Any]):
    """Text compared by code point: ``<text> COLLATE "C"`` on PostgreSQL (which
    otherwise follows the column's collation, the database's for a table made
    before the type map), the text itself elsewhere (SQLite's ``BINARY``,
    MariaDB's binary collation). On a ``"C"`` column PostgreSQL still uses its
    index."""

    __visit_name__ = "typedstore_code_point_text"
    inherit_cache = True
    _traverse_internals = [("element", visitors.InternalTraversal.dp_clauseelement)]

    def __init__(self, element: sa.ColumnElement[Any]) -> None:
        self.element = element
        self.type = element.type


@compiles(CodePointText)
def _code_point_text(element: CodePointText, compiler: Any, **kw: Any) -> str:
    return str(compiler.process(element.element, **kw))


@compiles(CodePointText, "postgresql")
def _code_point_text_pg(element: CodePointText, compiler: Any, **kw: Any) -> str:
    return f'{compiler.process(element.element, **kw)} COLLATE "C"'


class AsciiLower(sa.ColumnElement[str]):
    """Text with the ASCII letters A-Z lowered and every other character kept:
    SQLite's ``lower()`` (ASCII only without the ICU extension), PostgreSQL's
    ``lower()`` under the ``"C"`` collation, and on MariaDB/MySQL (whose
    ``LOWER()`` folds every letter) one ``REPLACE`` per letter."""

    __visit_name__ = "typedstore_ascii_lower"
    inherit_cache = True
    _traverse_internals = [("element", visitors.InternalTraversal.dp_clauseelement)]
    type = sa.String()

    def __init__(self, element: sa.ColumnElement[Any]) -> None:
        self.element = element


@compiles(AsciiLower)
def _ascii_lower(element: AsciiLower, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.element, **kw)})"


@compiles(AsciiLower, "postgresql")
def _ascii_lower_pg(element: AsciiLower, compiler: Any, **kw: Any) -> str:
    return f'lower(({compiler.process(element.element, **kw)}) COLLATE "C")'


@compiles(AsciiLower, "mysql")
@compiles(AsciiLower, "mariadb")
def _ascii_lower_mysql(element: AsciiLower, compiler: Any, **kw: Any) -> str:
    text = str(compiler.process(element.element, **kw))
    for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
        text = f"REPLACE({text}, '{letter}', '{letter.lower()}')"
    return text


class Ordered(sa.ColumnElement[Any]):
    """One ORDER BY term with typedstore's NULL order on every backend: NULL is
    the smallest value (first ascending, last descending) unless ``null_first``
    says otherwise (``True``: first); text by code point.

    Renders ``NULLS FIRST``/``NULLS LAST`` only where the backend's own order
    differs (PostgreSQL puts NULLs last ascending; SQLite and MariaDB first) and
    the column is nullable; MariaDB/MySQL, which have no ``NULLS`` clause, get
    ``<column> IS NULL`` as a first key.
    """

    __visit_name__ = "typedstore_ordered"
    inherit_cache = True
    # Strings, not booleans: SQLAlchemy leaves falsy values out of cache keys, so
    # False and None would share a compiled statement.
    _traverse_internals = [
        ("element", visitors.InternalTraversal.dp_clauseelement),
        ("direction", visitors.InternalTraversal.dp_string),
        ("nulls", visitors.InternalTraversal.dp_string),
    ]

    def __init__(self, element: sa.ColumnElement[Any], descending: bool = False,
                 null_first: bool | None = None) -> None:
        self.element = element
        self.direction = "desc" if descending else "asc"
        self.nulls = "smallest" if null_first is None else "first" if null_first else "last"
        self.type = element.type

    @property
    def descending(self) -> bool:
        return self.direction == "desc"

    def wanted_nulls_first(self) -> bool:
        return not self.descending if self.nulls == "smallest" else self.nulls == "first"

    def nullable(self) -> bool:
        element = self.element
        return not isinstance(element, sa.Column) or bool(element.nullable and
                                                          not element.primary_key)


@compiles(Ordered)
def _ordered(element: Ordered, compiler: Any, **kw: Any) -> str:
    dialect = compiler.dialect.name
    column = element.element
    key = compiler.process(column, **kw)
    if dialect == "postgresql" and _is_text(column.type):
        key = f'{key} COLLATE "C"'
    text = f"{key} {'DESC' if element.descending else 'ASC'}"
    first = element.wanted_nulls_first()
    if not element.nullable():
        return text
    own_first = element.descending if dialect == "postgresql" else not element.descending
    if first == own_first:
        return text
    if dialect in ("mysql", "mariadb"):
        return f"{compiler.process(column, **kw)} IS NULL {'DESC' if first else 'ASC'}, {text}"
    return f"{text} NULLS {'FIRST' if first else 'LAST'}"


def _ordering(item: Any, table: sa.Table) -> Any:
    """An ORDER BY item on ``table`` with the portable NULL and text order (a
    column, ``column.desc()``, ``column.asc().nulls_last()``...); other
    expressions are kept as they are."""
    expression = _adapt(_as_column(table, item), table)
    nulls: bool | None = None
    if isinstance(expression, sa.UnaryExpression) and expression.modifier in (
            operators.nulls_first_op, operators.nulls_last_op):
        nulls = expression.modifier is operators.nulls_first_op
        expression = expression.element
    descending = False
    if isinstance(expression, sa.UnaryExpression) and expression.modifier in (
            operators.asc_op, operators.desc_op):
        descending = expression.modifier is operators.desc_op
        expression = expression.element
    if isinstance(expression, sa.Column):
        return Ordered(expression, descending, nulls)
    return _adapt(_as_column(table, item), table)


def _plain_text(type_: sa.types.TypeEngine[Any]) -> bool:
    """A text column whose values bind as plain strings (``str`` and enum fields,
    ``state``, text ``extra_fields`` columns; not SQLAlchemy's ``Enum``)."""
    if isinstance(type_, (typemap.Text, typemap.EnumName)):
        return True
    return isinstance(type_, sa.String) and not isinstance(type_, sa.Enum)


def _then_name(policy: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``policy``, then an enum member as its name (what an enum field stores)."""
    def checked(value: Any) -> Any:
        value = policy(value)
        return value.name if isinstance(value, enum.Enum) else value

    return checked


def _refused(column: sa.Column[Any], value: Any, reason: str) -> QueryError:
    return QueryError(f"query condition on field {column.name!r}: {reason}; no stored value "
                      "can match it", column.name, value)


def _value_policy(column: sa.Column[Any]) -> Callable[[Any], Any] | None:
    """How a value compared with ``column`` is checked: the row field's policy,
    the text policy of ``state``, or the plain column type's."""
    field = column.info.get(typemap.FIELD_TYPE_KEY)
    if field is not None:
        return functools.partial(typemap.condition_value, field)
    if column.name == "state":
        return typemap.pattern_value
    return typemap.column_check(column.type)


def _checked(column: sa.Column[Any], policy: Callable[[Any], Any], value: Any) -> Any:
    if value is None:
        return None
    try:
        return policy(value)
    except typemap.Refused as exc:
        raise _refused(column, value, str(exc)) from None
    except (TypeError, ValueError) as exc:  # a value the policy cannot even look at
        raise _refused(column, value, f"{type(exc).__name__}: {exc}") from None


def _value_binds(element: Any) -> Iterator[sa.BindParameter[Any]]:
    """The values compared with a column: a bound value, the bounds of
    ``between``, a tuple; not the values inside a subquery (``in_(select(...))``),
    which are compared with other columns."""
    if isinstance(element, sa.BindParameter):
        yield element
    elif isinstance(element, (sa.sql.elements.ClauseList, sa.sql.elements.ExpressionClauseList,
                              sa.sql.elements.Grouping, sa.Tuple)):
        for child in element.get_children():
            yield from _value_binds(child)


def _escape_literal(value: str) -> str:
    """``value`` with LIKE's wildcards (and the escape character) escaped."""
    return (value.replace(_ESCAPE, _ESCAPE + _ESCAPE).replace("%", _ESCAPE + "%")
            .replace("_", _ESCAPE + "_"))


def _adapt(expression: Any, table: sa.Table) -> Any:
    """Rewrite a condition (or ordering) for ``table``: columns of other tables (a
    row model's own) become ``table``'s, by name; values compared with a column
    take the store column's type and pass its value policy (:class:`QueryError`
    otherwise); pattern operators and text ranges get the portable semantics
    described above."""
    if hasattr(expression, "__clause_element__"):
        expression = expression.__clause_element__()
    if not isinstance(expression, sa.ClauseElement):
        raise TypeError(
            f"query conditions are SQL expressions such as JobRow.cores > 8, got {expression!r}"
        )

    # Values compared with a column take the store column's type (the type map's:
    # a UTC datetime, a scaled Decimal on SQLite...), not the type the row model's
    # own column had when the expression was written, and its value policy.
    binds: dict[int, tuple[sa.types.TypeEngine[Any], Any, bool]] = {}
    patterns: dict[int, bool] = {}  # binary expressions to rewrite -> escape '%', '_'
    constants: dict[int, sa.BindParameter[Any]] = {}  # true/false compared with a value
    for elem in visitors.iterate(expression):
        if not (isinstance(elem, sa.BinaryExpression) and isinstance(elem.left, sa.Column)):
            continue
        column = _column(table, elem.left.name)
        store_type: sa.types.TypeEngine[Any] = column.type
        policy: Callable[[Any], Any] | None = None
        pattern = _PATTERN_OPS.get(elem.operator)
        if pattern is not None:
            literal = pattern[2] and elem.modifiers.get("escape") is None
            patterns[id(elem)] = literal
            store_type = sa.String()  # a pattern, not a value (an enum field's too)
            policy = typemap.pattern_value
        elif elem.operator in _EQUALITY_OPS or elem.operator in _RANGE_OPS:
            policy = _value_policy(column)
            if _plain_text(column.type):
                # The value as the text stored (an enum member's name), bound
                # without the column's collation: PostgreSQL's grammar takes no
                # COLLATE in BETWEEN's bounds, and a collation on the value would
                # keep the index of a column with another one from being used.
                store_type = sa.String()
                policy = _then_name(policy) if policy is not None else None
                if elem.operator in _RANGE_OPS:
                    patterns[id(elem)] = False
        right = elem.right
        if isinstance(right, (sa.sql.elements.True_, sa.sql.elements.False_)) \
                and policy is not None and not isinstance(column.type, sa.Boolean):
            # SQLAlchemy writes `col == True` as the constant true, no bound
            # value: bind it as the value the field stores for it (1 in an int
            # field, as saves do), or refuse it, the same on every backend.
            flag = isinstance(right, sa.sql.elements.True_)
            constants[id(right)] = sa.bindparam(
                None, _checked(column, policy, flag), type_=store_type)
            continue
        for inner in _value_binds(right):
            if inner.callable is not None:
                continue
            value = inner.value
            if policy is not None:
                if inner.expanding and isinstance(value, (list, tuple)):
                    value = [_checked(column, policy, v) for v in value]
                else:
                    value = _checked(column, policy, value)
            if pattern is not None and patterns[id(elem)] and isinstance(value, str):
                value = _escape_literal(value)
            elif (pattern is not None and isinstance(value, str)
                  and elem.modifiers.get("escape") is None
                  and (len(value) - len(value.rstrip(_LIKE_ESCAPE))) % 2):
                raise _refused(column, value, "the pattern ends with the escape character "
                               "'\\' (write '\\\\' for a backslash)")
            binds[id(inner)] = (store_type, value, policy is not None or pattern is not None)

    def replace(elem: Any) -> Any:
        # Also the row model's own (ORM-annotated) columns of this very table:
        # plain columns compile without SQLAlchemy's ORM layer, much faster.
        if isinstance(elem, sa.Column):
            return _column(table, elem.name)
        if id(elem) in constants:
            return constants[id(elem)]
        if isinstance(elem, sa.BindParameter) and id(elem) in binds:
            type_, value, changed = binds[id(elem)]
            bind = elem if elem.type is type_ else elem._with_binary_element_type(type_)
            return bind._with_value(value, maintain_key=True) if changed else bind  # type: ignore[no-untyped-call]
        if isinstance(elem, sa.BinaryExpression) and id(elem) in patterns:
            return _portable(elem, traverse(elem.left), traverse(elem.right), patterns[id(elem)])
        return None

    def traverse(elem: Any) -> Any:
        return visitors.replacement_traverse(elem, {}, replace)  # type: ignore[call-overload]

    return traverse(expression)


def _portable(elem: sa.BinaryExpression[Any], left: Any, right: Any, literal: bool) -> Any:
    """The portable form of a text range (compared by code point) or of a pattern
    operator (case-sensitive; ilike & co. on ASCII-lowered text; with ``literal``,
    '%' and '_' escaped in the value of startswith/endswith/contains)."""
    pattern = _PATTERN_OPS.get(elem.operator)
    if pattern is None:  # a text range
        return sa.BinaryExpression(CodePointText(left), right, elem.operator, type_=elem.type,
                                   negate=elem.negate, modifiers=elem.modifiers)
    modifiers = dict(elem.modifiers)
    if literal:
        modifiers["escape"] = _ESCAPE
    elif modifiers.get("escape") is None:
        modifiers["escape"] = _LIKE_ESCAPE
    if elem.operator in _CASE_INSENSITIVE_OPS:
        left, right = AsciiLower(left), AsciiLower(right)
    return sa.BinaryExpression(left, right, pattern[0], type_=elem.type, negate=pattern[1],
                               modifiers=modifiers)
