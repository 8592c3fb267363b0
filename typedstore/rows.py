"""Row models: the SQLModel base of every store table, and extracted fields.

A row model is a SQLModel table class that subclasses :class:`StoreRow`. The
base gives the columns every store has; each field declared with
:func:`extracted` names an accessor that pulls its value out of the object on
save::

    class JobRow(StoreRow, table=True):
        __tablename__ = "jobs"
        jobname: str | None = extracted(GET.jobname)
        cores: int = extracted(GET.requested_cores, default=1, index=True)

The row model describes the columns; a store builds its own table from it
(under the store's table name), so one row model serves several tables and
queries written with ``JobRow.cores > 8`` run against whichever store they are
given to.

:class:`RowBuilder` turns an object into the values of one row: it runs every
extractor and validates each value with Pydantic against the field's
annotation. A missing value (the accessor raised ``AttributeError``,
``KeyError`` or ``IndexError``) takes the field's default; a value that does not
validate is a :class:`~typedstore.errors.SaveError` naming the field and the
object's id. GC3Pie-style ``extra_fields`` columns are lenient instead: any
error of their extractor is logged and the column is NULL.
"""

from __future__ import annotations

import logging
import time
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sqlalchemy.dialects import mysql
from sqlmodel import Field, SQLModel
from sqlmodel.main import get_column_from_field

from .accessors import MISSING_ERRORS, fast_accessor
from .defaults import STATE_LENGTH, UNKNOWN_STATE
from .errors import SaveError

log = logging.getLogger(__name__)

#: Key of ``Column.info`` holding a field's extractor.
EXTRACTOR_KEY = "typedstore_extractor"
#: Key of ``Column.info`` holding the default given to :func:`extracted`, if any.
DEFAULT_KEY = "typedstore_default"
#: Key of ``Column.info`` marking a lenient (GC3Pie ``extra_fields``) extractor.
LENIENT_KEY = "typedstore_lenient"

#: Columns the store itself fills: never extracted, never given by users.
BOOKKEEPING_COLUMNS = ("version", "updated_at")
BASE_COLUMNS = ("id", "data", "state", *BOOKKEEPING_COLUMNS)

#: The payload column: LONGBLOB on MySQL/MariaDB (BLOB holds only 64 KB there),
#: BYTEA on PostgreSQL, BLOB on SQLite.
PayloadType = sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")

#: The id column: BIGINT, but INTEGER on SQLite, where only "INTEGER PRIMARY KEY"
#: makes the column the rowid (no second index, fastest lookups).
IdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class StoreRow(SQLModel):
    """Columns every store table has.

    Attributes:
        id (int): the record id (integer primary key; ids come from the store's
            counter table, never from autoincrement).
        data (bytes | None): the pickled object. Queries that return rows leave it out.
        state (str): ``obj.execution.state``, or ``'UNKNOWN'``; indexed.
        version (int): incremented by every write; a write that expected another
            version raises ConflictError.
        updated_at (float | None): Unix time of the last write.
    """

    id: int | None = Field(
        default=None, primary_key=True, sa_type=IdType,
        sa_column_kwargs={"autoincrement": False},
    )
    data: bytes | None = Field(default=None, sa_type=PayloadType, repr=False)
    state: str = Field(
        default=UNKNOWN_STATE, max_length=STATE_LENGTH, index=True,
        sa_type=sa.String(STATE_LENGTH),
    )
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    updated_at: float | None = Field(default=None, sa_type=sa.Double)


def extracted(
    extractor: Callable[[Any], Any],
    default: Any = PydanticUndefined,
    *,
    index: bool = False,
    sa_type: Any = PydanticUndefined,
    nullable: bool | Any = PydanticUndefined,
    **field_kwargs: Any,
) -> Any:
    """Declare a row field whose value ``extractor(obj)`` gives on every save.

    ``extractor`` is any callable, typically an accessor (``GET.a.b``).
    ``default`` is used when the value is missing; without one, a missing value
    is NULL if the annotation admits ``None`` and an error otherwise.
    ``index=True`` indexes the column. Other keyword arguments go to
    ``sqlmodel.Field`` (``max_length``, ``ge``...).
    """
    column_kwargs = dict(field_kwargs.pop("sa_column_kwargs", {}))
    info = dict(column_kwargs.pop("info", {}))
    info[EXTRACTOR_KEY] = extractor
    if default is PydanticUndefined:
        default = None
    else:
        info[DEFAULT_KEY] = default
    column_kwargs["info"] = info
    if nullable is not PydanticUndefined:
        field_kwargs["nullable"] = nullable
    return Field(
        default=default, index=index, sa_type=sa_type, sa_column_kwargs=column_kwargs,
        **field_kwargs,
    )


def base_columns() -> list[sa.Column[Any]]:
    """Fresh columns of :class:`StoreRow`, for a table without a row model.

    Built by SQLModel from the fields above, exactly as for a row model's own
    table, so the two can never drift apart.
    """
    columns = []
    for name, field in StoreRow.model_fields.items():
        column = get_column_from_field(field)
        column.name = column.key = name
        columns.append(column)
    return columns


class FieldSpec:
    """How one extracted column gets its value.

    Attributes:
        name (str): the column name.
        extractor: ``obj -> value``.
        default: value used when the extractor finds nothing.
        adapter (TypeAdapter | None): validates and coerces the value.
        exact (frozenset[type]): value types the adapter would return unchanged
            (an unconstrained ``int``, ``str``...): such values skip it.
        lenient (bool): GC3Pie semantics (errors give NULL) instead of raising.
        required (bool): a missing value is an error (no default, not nullable).
    """

    __slots__ = ("adapter", "default", "exact", "extractor", "lenient", "name", "required")

    def __init__(self, name: str, extractor: Callable[[Any], Any], default: Any,
                 adapter: TypeAdapter[Any] | None, lenient: bool, required: bool,
                 exact: frozenset[type] = frozenset()) -> None:
        self.name = name
        self.extractor = extractor
        self.default = default
        self.adapter = adapter
        self.exact = exact
        self.lenient = lenient
        self.required = required


#: Types whose values an unconstrained Pydantic field of that type returns as they are.
_PASS_THROUGH: frozenset[type] = frozenset({int, str, float, bool, bytes})


def _validation(field: FieldInfo) -> tuple[TypeAdapter[Any], frozenset[type]]:
    """The adapter validating a row field (with its constraints: ``max_length``,
    ``ge``...) and the value types it would pass unchanged."""
    constraints = [m for m in field.metadata
                   if type(m).__module__.partition(".")[0] != "sqlmodel"]
    # The FieldInfo as metadata carries its constraints into the adapter.
    annotated: Any = Annotated[field.annotation, field]
    adapter: TypeAdapter[Any] = TypeAdapter(annotated)
    if constraints:
        return adapter, frozenset()
    options = typing.get_args(field.annotation) or (field.annotation,)
    if field.annotation in _PASS_THROUGH or (
        typing.get_origin(field.annotation) in (typing.Union, types.UnionType)
        and all(t in _PASS_THROUGH or t is type(None) for t in options)
    ):
        return adapter, frozenset(t for t in options if t in _PASS_THROUGH)
    return adapter, frozenset()


def _state_value(obj: Any) -> str:
    try:
        state = obj.execution.state
    except MISSING_ERRORS:
        return UNKNOWN_STATE
    if state is None:
        return UNKNOWN_STATE
    text = str(state)
    return text[:STATE_LENGTH]


class RowBuilder:
    """Computes the column values of the row for an object.

    Built once per store from its table columns (and row model, for the Pydantic
    annotations); :meth:`values` is on the save hot path, so it does no lookups
    beyond one call per field.

    Attributes:
        fields (list[FieldSpec]): the extracted columns, ``state`` excluded.
        has_version (bool): the table has the bookkeeping columns.
    """

    def __init__(self, table: sa.Table, row_model: type[SQLModel] | None = None) -> None:
        model_fields: Mapping[str, FieldInfo] = {}
        if row_model is not None:
            model_fields = row_model.model_fields
        self.fields: list[FieldSpec] = []
        self.has_version = "version" in table.c and "updated_at" in table.c
        for column in table.columns:
            if column.name in BASE_COLUMNS:
                continue
            extractor = column.info.get(EXTRACTOR_KEY)
            if extractor is None:
                continue
            lenient = bool(column.info.get(LENIENT_KEY))
            field = model_fields.get(column.name)
            adapter, exact = None, frozenset[type]()
            if field is not None and not lenient:
                adapter, exact = _validation(field)
            has_default = DEFAULT_KEY in column.info
            self.fields.append(FieldSpec(
                column.name, fast_accessor(extractor), column.info.get(DEFAULT_KEY), adapter,
                lenient,
                required=not has_default and not column.nullable, exact=exact,
            ))
        self.names = ["state", *(f.name for f in self.fields)]

    def values(self, obj: Any, id_: Any) -> list[Any]:
        """Return the column values for ``obj`` in the order of :attr:`names`.

        Raises :class:`SaveError` naming the field and ``id_`` if a value does
        not validate or a required value is missing.
        """
        out: list[Any] = [_state_value(obj)]
        for spec in self.fields:
            out.append(self.field_value(spec, obj, id_))
        return out

    @staticmethod
    def field_value(spec: FieldSpec, obj: Any, id_: Any) -> Any:
        """The validated value of one field for ``obj`` (raises SaveError, as :meth:`values`)."""
        try:
            value = spec.extractor(obj)
        except MISSING_ERRORS:
            if spec.required:
                raise SaveError(
                    f"object {id_} ({type(obj).__name__}): field {spec.name!r} has no "
                    "value and no default",
                    id_, spec.name,
                ) from None
            value = spec.default
        except Exception as exc:
            if not spec.lenient:
                raise SaveError(
                    f"object {id_} ({type(obj).__name__}): extractor of field "
                    f"{spec.name!r} failed: {type(exc).__name__}: {exc}",
                    id_, spec.name,
                ) from exc
            log.warning("object %s: extractor of column %r failed (%s: %s); storing NULL",
                        id_, spec.name, type(exc).__name__, exc)
            value = None
        if spec.adapter is not None and value is not None and type(value) not in spec.exact:
            try:
                return spec.adapter.validate_python(value)
            except ValidationError as exc:
                raise SaveError(
                    f"object {id_} ({type(obj).__name__}): field {spec.name!r}: "
                    f"{value!r} is not valid: {exc.errors()[0]['msg']}",
                    id_, spec.name,
                ) from None
        if value is None and spec.required:
            raise SaveError(
                f"object {id_} ({type(obj).__name__}): field {spec.name!r} is None but "
                "the column is not nullable",
                id_, spec.name,
            )
        return value


def now() -> float:
    """The ``updated_at`` value of a write made now."""
    return time.time()


def lenient_column(column: sa.Column[Any], extractor: Callable[[Any], Any]) -> sa.Column[Any]:
    """A copy of a GC3Pie ``extra_fields`` column carrying its (lenient) extractor."""
    copy = column._copy()
    copy.info[EXTRACTOR_KEY] = extractor
    copy.info[LENIENT_KEY] = True
    return copy


__all__ = ["RowBuilder", "StoreRow", "extracted"]
