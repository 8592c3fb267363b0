"""What differs between a store table and its row model, in words a person can act on.

:func:`typedstore.drift` returns Alembic's raw differences (tuples); this module
turns each into a :class:`Difference`: one sentence saying what differs and what
to do, and whether anything *must* be done (``action_needed``). Columns and
indexes the database has and the row model does not are kept by typedstore
(GC3Pie's ``extra_fields``, a field removed from the row model): reported, but
no action is needed. ``typedstore check`` prints them, or JSON with ``--json``,
and exits 0 when no action is needed, 1 otherwise.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import asdict, dataclass, replace
from typing import Any

import sqlalchemy as sa

from .defaults import ID_COUNTER_TABLE
from .schema import (
    MODULE_PLACEHOLDER,
    RowModel,
    add_columns_command,
    column_kind,
    command_url,
    drift,
    model_note,
    model_spec,
    password_note,
    revision_command,
    upgrade_command,
)
from .tables import store_table_name
from .urls import parse_store_url, redact

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Difference:
    """One difference between a store table and its row model.

    Attributes:
        kind: ``missing_table``, ``missing_column``, ``extra_column``,
            ``missing_index``, ``extra_index``, ``type``, ``nullable``,
            ``other``.
        table: the table it concerns.
        name: the column or index (the table for ``missing_table``).
        database: what the database has (a column's SQL type, an index's
            columns; ``None``: nothing).
        row_model: what the row model declares (``None``: nothing).
        action_needed: something must change before a store with this row
            model can use the table.
        message: the sentence shown to people.
    """

    kind: str
    table: str
    name: str
    database: str | None
    row_model: str | None
    action_needed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gc3pie_id(diff: tuple[Any, ...], dialect: sa.Dialect) -> bool:
    """Whether ``diff`` is the ``id`` column GC3Pie made as another integer type
    (typedstore uses it as it is)."""
    return (diff[0] == "modify_type" and name_of(diff) == "id"
            and column_kind(diff[5], dialect) == column_kind(diff[6], dialect) == "int")


def _type(type_: Any, dialect: sa.Dialect) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception as exc:  # a type the dialect cannot render: its Python form
        log.debug("type %r cannot be compiled for %s: %s", type_, dialect.name, exc)
        return repr(type_)


def _index_columns(index: Any) -> str:
    return ", ".join(str(getattr(c, "name", c)) for c in index.expressions)


def describe(diffs: list[Any], url: str, table: str, row_model: RowModel,
             dialect: sa.Dialect) -> list[Difference]:
    """Alembic's differences (:func:`typedstore.drift`) of ``table`` as :class:`Difference`
    objects, the commands in them naming ``url`` (password hidden) and ``table``."""
    model = row_model.__name__ if row_model is not None else "the row model"
    if row_model is None:
        no_model = " (none was given: pass the row model, --row-model module:Class)"
    else:
        no_model = ""
    flat = _flatten(diffs)
    # `typedstore upgrade` adds columns but refuses a table whose columns changed
    # type: beside such a change, only a migration brings the table in line.
    retyped = any(d[0] == "modify_type" and not _gc3pie_id(d, dialect) for d in flat)
    add = None if retyped else add_columns_command(url, table, row_model)
    generate = revision_command(url, table, row_model, "describe the change")
    migrate = (f"generate a reviewed migration with: {generate}" if generate
               else "write a reviewed migration (alembic revision --autogenerate -x "
                    "row_model=module:Class)")
    out: list[Difference] = []
    # A missing table brings its indexes with it: one line for the table.
    missing = {d[1].name for d in flat if d[0] == "add_table"}
    flat = [d for d in flat
            if not (d[0] == "add_index" and getattr(d[1].table, "name", None) in missing)]
    for diff in flat:
        kind = diff[0]
        if kind == "add_table":
            name = diff[1].name
            fix = upgrade_command(url, name if name != ID_COUNTER_TABLE else table, row_model)
            out.append(Difference(
                "missing_table", table, name, None,
                row_model.__name__ if row_model is not None else None, True,
                f"table `{name}` does not exist: create it with: {fix}"))
        elif kind in ("add_column", "remove_column"):
            column = diff[3]
            shown = _type(column.type, dialect)
            if kind == "add_column":
                how = (f"add it with: {add}" if add and column.nullable else migrate)
                out.append(Difference(
                    "missing_column", table, column.name, None, shown, True,
                    f"column `{column.name}` ({shown}) is in {model} but not in the database: "
                    f"{how}"))
            else:
                out.append(Difference(
                    "extra_column", table, column.name, shown, None, False,
                    f"column `{column.name}` ({shown}) is in the database but not in {model}"
                    f"{no_model}: add it to the row model, or leave it: extra columns are "
                    "kept"))
        elif kind in ("add_index", "remove_index"):
            index = diff[1]
            columns = _index_columns(index)
            if kind == "add_index":
                how = f"add it with: {add}" if add else migrate
                out.append(Difference(
                    "missing_index", table, str(index.name), None, columns, True,
                    f"index `{index.name}` on ({columns}) is declared by {model} but not in "
                    f"the database: {how}"))
            else:
                out.append(Difference(
                    "extra_index", table, str(index.name), columns, None, False,
                    f"index `{index.name}` on ({columns}) is in the database but not in "
                    f"{model}{no_model}: leave it (extra indexes are kept), or drop it with "
                    "a migration"))
        elif kind == "modify_type" and _gc3pie_id(diff, dialect):
            _, _, _, name, _, have, need = diff
            out.append(Difference(
                "type", table, name, _type(have, dialect), _type(need, dialect), False,
                f"column `id` is {_type(have, dialect)} in the database, typedstore makes it "
                f"{_type(need, dialect)}: a table GC3Pie made; typedstore reads and writes it "
                "as it is (nothing to do)"))
        elif kind == "modify_nullable" and name_of(diff) == "state" and diff[5]:
            out.append(Difference(
                "nullable", table, "state", "NULL allowed", "NOT NULL", False,
                "column `state` allows NULL in the database, typedstore makes it NOT NULL: a "
                "table GC3Pie made (GC3Pie's writes may leave it NULL); typedstore reads and "
                "writes it as it is (nothing to do)"))
        elif kind == "modify_type":
            _, _, _, name, _, have, need = diff
            out.append(Difference(
                "type", table, name, _type(have, dialect), _type(need, dialect), True,
                f"column `{name}` is {_type(have, dialect)} in the database, {model} declares "
                f"{_type(need, dialect)}: convert it with a reviewed migration ({migrate}; "
                "docs/schema-evolution.md, 'Change a field's type'), or give the field its "
                "old type back"))
        elif kind == "modify_nullable":
            _, _, _, name, _, have, need = diff
            def null(flag: Any) -> str:
                return "NULL allowed" if flag else "NOT NULL"
            out.append(Difference(
                "nullable", table, name, null(have), null(need), True,
                f"column `{name}` is {null(have)} in the database, {model} declares "
                f"{null(need)}: {migrate}, or change the field"))
        else:
            out.append(Difference(
                "other", table, str(diff[1] if len(diff) > 1 else ""), None, None, True,
                f"{kind}: {diff!r}"))
    # A command naming a password placeholder or MODULE says what to put there.
    shown_url = shlex.quote(command_url(url))
    return [replace(d, message=d.message + password_note(url) * (shown_url in d.message)
                    + model_note(row_model) * (f"{MODULE_PLACEHOLDER}:" in d.message))
            for d in out]


def name_of(diff: tuple[Any, ...]) -> str | None:
    """The column a ``modify_*`` difference of Alembic's is about."""
    return str(diff[3]) if len(diff) > 3 else None


def _flatten(diffs: list[Any]) -> list[tuple[Any, ...]]:
    """Alembic reports column modifications as a list of tuples per column."""
    flat: list[tuple[Any, ...]] = []
    for diff in diffs:
        if isinstance(diff, list):
            flat.extend(diff)
        else:
            flat.append(diff)
    return flat


def differences(url: str, table: str | None = None, row_model: RowModel = None,
                extra_fields: Any = None) -> list[Difference]:
    """What differs between the store table at ``url`` (the table by the one rule:
    :func:`typedstore.tables.store_table_name`) and ``row_model``, as
    :class:`Difference` objects (empty: none)."""
    parsed = parse_store_url(url)
    name = store_table_name(table, parsed.table, row_model)
    diffs = drift(url, name, row_model, extra_fields)
    dialect = sa.make_url(parsed.target).get_dialect()()
    return describe(diffs, url, name, row_model, dialect)


def report(url: str, table: str | None, row_model: RowModel,
           found: list[Difference]) -> dict[str, Any]:
    """The JSON document ``typedstore check --json`` prints."""
    parsed = parse_store_url(url)
    return {
        "url": redact(url),
        "table": store_table_name(table, parsed.table, row_model),
        "row_model": model_spec(row_model) or (row_model.__name__ if row_model else None),
        "action_needed": any(d.action_needed for d in found),
        "differences": [d.as_dict() for d in found],
    }
