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

Results stream: rows are fetched :data:`~typedstore.defaults.STREAM_BATCH_SIZE`
at a time (server-side cursors on PostgreSQL and MySQL), so iterating a query
of any size keeps memory flat.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql import visitors
from sqlmodel import SQLModel

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
            where.append(_column(table, name) == value)
        self._where = where
        self._order = [_adapt(_as_column(table, o), table) for o in order]
        self._limit = limit
        self._offset = offset

    def _copy(self, **changes: Any) -> Query:
        query = Query.__new__(Query)
        query.__dict__.update(self.__dict__)
        query.__dict__.update(changes)
        return query

    # ------------------------------------------------------------ refining

    def where(self, *conditions: Any, **equal: Any) -> Query:
        """This query with more conditions (all must hold)."""
        extra = Query(self.source, conditions, equal)._where
        return self._copy(_where=[*self._where, *extra])

    def order_by(self, *columns: Any) -> Query:
        """Order by columns (``JobRow.cores``, ``JobRow.cores.desc()`` or names)."""
        table = self.source.table
        return self._copy(_order=[_adapt(_as_column(table, c), table) for c in columns])

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


def _adapt(expression: Any, table: sa.Table) -> Any:
    """Rewrite columns of other tables (a row model's own) to ``table``'s, by name."""
    if hasattr(expression, "__clause_element__"):
        expression = expression.__clause_element__()
    if not isinstance(expression, sa.ClauseElement):
        raise TypeError(
            f"query conditions are SQL expressions such as JobRow.cores > 8, got {expression!r}"
        )

    # Values compared with a column take the store column's type (the type map's:
    # a UTC datetime, a scaled Decimal on SQLite...), not the type the row model's
    # own column had when the expression was written.
    retype: dict[int, sa.types.TypeEngine[Any]] = {}
    for elem in visitors.iterate(expression):
        if isinstance(elem, sa.BinaryExpression) and isinstance(elem.left, sa.Column):
            store_type = _column(table, elem.left.name).type
            for inner in visitors.iterate(elem.right):
                if isinstance(inner, sa.BindParameter) and inner.type is not store_type:
                    retype[id(inner)] = store_type

    def replace(elem: Any) -> Any:
        # Also the row model's own (ORM-annotated) columns of this very table:
        # plain columns compile without SQLAlchemy's ORM layer, much faster.
        if isinstance(elem, sa.Column):
            plain = _column(table, elem.name)
            return None if plain is elem else plain
        if isinstance(elem, sa.BindParameter) and id(elem) in retype:
            return elem._with_binary_element_type(retype[id(elem)])
        return None

    return visitors.replacement_traverse(expression, {}, replace)  # type: ignore[call-overload]
