"""Precompiled record statements for the SQL store's hot path.

SQLAlchemy defines the statements once per store (so quoting, casts and
upsert syntax are the dialect's own); they are compiled to SQL text and run
directly on the driver connection, skipping the per-call work of an ORM
session or of Core execution. Bind values go through each column type's
bind processor, exactly as SQLAlchemy would apply it.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from .integrity import CHECKSUM_COLUMN, MAC_COLUMN
from .references import CHILD, REFERENCED_ROOT, ROOT, ROOT_COLUMN


class Compiled:
    """One statement as SQL text plus how to order and convert its parameters.

    Attributes:
        sql (str): the statement in the driver's parameter style.
        names (list[str]): bind parameter names, in positional order.
        positional (bool): the driver takes a sequence rather than a mapping.
    """

    __slots__ = ("names", "positional", "processors", "single", "sql")

    def __init__(self, statement: sa.ClauseElement, dialect: sa.Dialect,
                 types: Mapping[str, sa.types.TypeEngine[Any]]) -> None:
        compiled: Any = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = bool(dialect.positional)
        if self.positional:
            self.names = list(compiled.positiontup or [])
        else:
            self.names = list(compiled.binds)
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name in self.names:
            type_ = types.get(name)
            if type_ is None:
                continue
            if dialect.name == "sqlite" and isinstance(type_, sa.LargeBinary):
                # sqlite3 stores bytes as a BLOB as they are; SQLAlchemy's
                # processor would only wrap each payload in a memoryview.
                continue
            processor = type_.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        self.single: Callable[[Any], Sequence[Any] | dict[str, Any]] = self._single_maker()

    def _single_maker(self) -> Callable[[Any], Sequence[Any] | dict[str, Any]]:
        """A builder of driver parameters for statements with one bind (reads by id)."""
        if len(self.names) != 1:
            names = self.names

            def not_single(value: Any) -> Any:
                raise TypeError(f"statement has binds {names}, not exactly one")

            return not_single
        name = self.names[0]
        convert = self.processors.get(name)
        if self.positional:
            if convert is None:
                return lambda value: (value,)
            return lambda value: (convert(value),)
        if convert is None:
            return lambda value: {name: value}
        return lambda value: {name: convert(value)}

    def builder(self, source: Sequence[str], aliases: Mapping[str, str] | None = None
                ) -> Callable[[Sequence[Any]], Sequence[Any] | dict[str, Any]]:
        """A function turning values listed in ``source`` order into driver parameters.

        The write hot path builds one list per record and this turns it into
        the driver's tuple or mapping in one pass (bind processors applied).
        ``aliases`` maps a bind name to the source name holding its value
        (``k_id`` -> ``id``). Raises ValueError if a bind has no source.
        """
        index = {name: i for i, name in enumerate(source)}
        aliases = aliases or {}
        try:
            steps = [(name, index[aliases.get(name, name)], self.processors.get(name))
                     for name in self.names]
        except KeyError as exc:
            raise ValueError(f"no value for bind {exc.args[0]!r} in {list(source)}") from None
        if self.positional:
            if not self.processors and len(steps) > 1:
                return operator.itemgetter(*(i for _, i, _ in steps))
            positional = [(i, f) for _, i, f in steps]
            return lambda values: tuple([values[i] if f is None else f(values[i])
                                         for i, f in positional])
        return lambda values: {name: values[i] if f is None else f(values[i])
                               for name, i, f in steps}

    def params(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """Driver parameters for ``values`` (keyed by bind name)."""
        processors = self.processors
        if self.positional:
            if not processors:
                return tuple([values[name] for name in self.names])
            return tuple([processors[name](values[name]) if name in processors
                          else values[name] for name in self.names])
        if not processors:
            return dict(values)
        return {k: (processors[k](v) if k in processors else v) for k, v in values.items()}


class RecordStatements:
    """The statements a store runs per record, for one table and dialect.

    Bind names: ``k_id`` (the key), ``k_version`` (expected version), and one
    per written column, named after it. A table with the integrity columns
    (``_checksum``, ``_mac``: :mod:`typedstore.integrity`) writes them after
    ``data`` and reads them after ``version``.
    """

    def __init__(self, table: sa.Table, dialect: sa.Dialect, fields: Sequence[str],
                 has_version: bool) -> None:
        self.table = table
        self.has_version = has_version
        c = table.c
        #: The table has the integrity columns (revision ts0004).
        self.integrity = CHECKSUM_COLUMN in c and MAC_COLUMN in c
        seal = [CHECKSUM_COLUMN, MAC_COLUMN] if self.integrity else []
        #: The table has the reference-tracking column (revision ts0005).
        self.tracking = ROOT_COLUMN in c
        track = [ROOT_COLUMN] if self.tracking else []
        written = ["data", *seal, *track, *fields]
        if has_version:
            written.append("updated_at")
        types: dict[str, sa.types.TypeEngine[Any]] = {n: c[n].type for n in written}
        types["id"] = types["k_id"] = c.id.type
        binds = {name: sa.bindparam(name, type_=c[name].type) for name in written}
        key = c.id == sa.bindparam("k_id", type_=c.id.type)

        def compile_(statement: sa.ClauseElement) -> Compiled:
            return Compiled(statement, dialect, types)

        insert_values: dict[str, Any] = {"id": sa.bindparam("id", type_=c.id.type), **binds}
        if has_version:
            insert_values["version"] = sa.literal_column("1")
        self.insert = compile_(table.insert().values(insert_values))

        bumped: dict[str, Any] = dict(binds)
        if self.tracking:
            # A child written as a child stays one, an unreferenced root written
            # as a root stays one; anything else is a root that was referenced
            # (a record not known yet too: see typedstore.references).
            root = c[ROOT_COLUMN]
            wants = sa.bindparam("k_root", type_=root.type)
            child: Any = sa.literal_column(str(CHILD))
            plain: Any = sa.literal_column(str(ROOT))
            referenced: Any = sa.literal_column(str(REFERENCED_ROOT))
            bumped[ROOT_COLUMN] = sa.case(
                (sa.and_(root == child, wants == child), child),
                (sa.and_(root == plain, wants == plain), plain),
                else_=referenced)
            types["k_root"] = root.type
        if has_version:
            bumped["version"] = c.version + sa.literal_column("1")
        # replace() and upserts overwrite whatever version is stored; the new one
        # must come back so that the next save of the object is checked against
        # it: RETURNING where the dialect has it, else (MySQL/MariaDB) the
        # connection's LAST_INSERT_ID(expr), which the driver reports as lastrowid.
        self.mysql_version = has_version and dialect.name in ("mysql", "mariadb")
        self.returning = has_version and not self.mysql_version and bool(
            dialect.update_returning and dialect.insert_returning)
        #: The new version of a replace or upsert can be read (returned_version).
        self.reports_version = self.mysql_version or self.returning
        reported = dict(bumped)
        if self.mysql_version:
            reported["version"] = sa.func.last_insert_id(c.version + sa.literal_column("1"))
        replace: Any = table.update().where(key).values(reported)
        if self.returning:
            replace = replace.returning(c.version)
        self.replace = compile_(replace)
        if has_version:
            self.update_checked = compile_(
                table.update()
                .where(key, c.version == sa.bindparam("k_version", type_=c.version.type))
                .values(bumped)
            )
        upsert: Any = self._upsert(dialect, insert_values, reported)
        if self.returning:
            upsert = upsert.returning(c.version)
        self.upsert = compile_(upsert)
        sealed = [c[CHECKSUM_COLUMN], c[MAC_COLUMN]] if self.integrity \
            else [sa.null(), sa.null()]
        self.read = compile_(
            sa.select(c.data, c.version if has_version else sa.null(), *sealed).where(key)
        )
        if self.integrity and has_version:
            # Re-signing (typedstore.integrity.resign): the MAC only, of the version read.
            self.store_mac = compile_(
                table.update()
                .where(key, c.version == sa.bindparam("k_version", type_=c.version.type))
                .values({MAC_COLUMN: binds[MAC_COLUMN]}))
        self.read_version = compile_(
            sa.select(c.version if has_version else sa.null()).where(key)
        )
        self.delete = compile_(table.delete().where(key))
        if self.tracking:
            # Removing a root that no record ever referenced needs no check.
            self.delete_unreferenced = compile_(
                table.delete().where(key, c[ROOT_COLUMN] == sa.literal_column(str(ROOT))))
        # Values of a record write, in the order the store lists them; each
        # write statement takes its parameters from such a list.
        self.source = ["id", "data", *seal, *track, *fields]
        if has_version:
            self.source += ["updated_at", "k_version"]
        key_alias = {"k_id": "id", "k_root": ROOT_COLUMN}
        self.insert_params = self.insert.builder(self.source)
        self.replace_params = self.replace.builder(self.source, key_alias)
        self.upsert_params = self.upsert.builder(self.source, key_alias)
        if has_version:
            self.update_checked_params = self.update_checked.builder(self.source, key_alias)
        self.ids = compile_(sa.select(c.id).order_by(c.id))

    def returned_version(self, cursor: Any, rowcount: int) -> int | None:
        """The version a replace or upsert just wrote (``None``: no row matched).

        Call right after the statement ran on ``cursor``.
        """
        if self.returning:
            row = cursor.fetchone()
            return None if row is None else int(row[0])
        if not rowcount:
            return None
        # An upsert that inserted sets no LAST_INSERT_ID: lastrowid is 0, version 1.
        return int(cursor.lastrowid or 1)

    def _upsert(self, dialect: sa.Dialect, insert_values: dict[str, Any],
                bumped: dict[str, Any]) -> sa.ClauseElement:
        table = self.table
        name = dialect.name
        if name == "sqlite":
            stmt = sqlite.insert(table).values(insert_values)
            return stmt.on_conflict_do_update(index_elements=[table.c.id], set_=bumped)
        if name == "postgresql":
            pg = postgresql.insert(table).values(insert_values)
            return pg.on_conflict_do_update(index_elements=[table.c.id], set_=bumped)
        if name in ("mysql", "mariadb"):
            my = mysql.insert(table).values(insert_values)
            return my.on_duplicate_key_update(bumped)
        raise NotImplementedError(f"no upsert for SQL dialect {name!r}")
