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
extractor, validates each value with Pydantic against the field's annotation,
then applies the type map's value policy (:mod:`typedstore.typemap`), the
same on every backend. A missing value (the accessor raised
``AttributeError``, ``KeyError`` or ``IndexError``) takes the field's default;
``None`` is stored as NULL only in an optional field (``X | None``). A value
that does not validate or that the policy refuses (NaN, infinities, NUL
characters, lone surrogates, integers beyond 64 bits, naive datetimes, text
longer than ``max_length`` or than an index holds...) is a
:class:`~typedstore.errors.SaveError` naming the field, the object's id and the
reason, raised before any statement runs. GC3Pie-style ``extra_fields``
columns are lenient instead: any error of their extractor, or a value the
policy refuses, is logged and the column is NULL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from sqlalchemy.dialects import mysql
from sqlmodel import Field, SQLModel
from sqlmodel.main import get_column_from_field, get_sqlalchemy_type

from . import typemap
from .accessors import MISSING_ERRORS, fast_accessor
from .defaults import STATE_LENGTH, UNKNOWN_STATE
from .errors import SaveError
from .typemap import FieldType

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

#: The ``state`` column: text compared by code point on every backend (VARCHAR
#: COLLATE "C" on PostgreSQL, utf8mb4 binary no-pad on MariaDB/MySQL), as the
#: type map's ``str`` fields (:class:`typedstore.typemap.Text`).
StateType = typemap.Text(STATE_LENGTH)

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
        default=UNKNOWN_STATE, max_length=STATE_LENGTH, index=True, sa_type=StateType,
    )
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    updated_at: float | None = Field(default=None, sa_type=sa.Double)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, naming the row model and the field, an annotation SQLModel has no
        column type for: SQLModel would refuse it next, at class definition, with a
        message naming neither (``<class 'list'> has no matching SQLAlchemy type``).
        Annotations SQLModel maps but the type map does not are refused when the
        row model is first used (:func:`typedstore.typemap.field_types`)."""
        super().__pydantic_init_subclass__(**kwargs)
        for name, field in cls.model_fields.items():
            if name in BASE_COLUMNS:
                continue
            try:
                get_sqlalchemy_type(field)
            except (ValueError, TypeError) as exc:
                raise typemap.refuse(
                    cls, name, f"the annotation {typemap.annotation_name(field.annotation)} "
                               f"is not in the map (SQLModel: {exc})") from None


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
    is NULL if the annotation admits ``None`` and an error otherwise (and the
    column of a new table is NOT NULL). ``index=True`` indexes the column.
    Other keyword arguments go to ``sqlmodel.Field`` (``max_length``, ``ge``,
    ``max_digits``...). The column type follows from the annotation
    (:mod:`typedstore.typemap`, docs/types.md); ``sa_type`` is refused.
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
        check: the type map's value policy (:mod:`typedstore.typemap`): returns
            the value to store or raises :class:`~typedstore.typemap.Refused`.
        lenient (bool): GC3Pie semantics (errors give NULL) instead of raising.
        required (bool): a missing value is an error (no default, not nullable).
        nullable (bool): ``None`` is stored as NULL; otherwise it is refused.
    """

    __slots__ = ("adapter", "check", "default", "exact", "extractor", "lenient", "name",
                 "nullable", "required")

    def __init__(self, name: str, extractor: Callable[[Any], Any], default: Any,
                 adapter: TypeAdapter[Any] | None, lenient: bool, required: bool,
                 exact: frozenset[type] = frozenset(),
                 check: Callable[[Any], Any] | None = None, nullable: bool = True) -> None:
        self.name = name
        self.extractor = extractor
        self.default = default
        self.adapter = adapter
        self.exact = exact
        self.check = check
        self.lenient = lenient
        self.required = required
        self.nullable = nullable


def _validation(field: FieldInfo, mapped: FieldType) -> tuple[TypeAdapter[Any], frozenset[type]]:
    """The adapter validating a row field (with its constraints: ``max_length``,
    ``ge``...) and the value types it would pass unchanged."""
    # The FieldInfo as metadata carries its constraints into the adapter.
    annotated: Any = Annotated[mapped.validation, field]
    return TypeAdapter(annotated), mapped.exact


_short = typemap._short  # one way to show a refused value in messages


def _reason(exc: ValidationError, value: Any) -> str:
    """The reason a value did not validate, in the words used on every backend."""
    error = exc.errors()[0]
    if error.get("type") == "timezone_aware":
        return str(typemap.Refused(
            "a naive datetime (no time zone) cannot be stored unambiguously; give an aware "
            "one, such as datetime.now(timezone.utc)"))
    return f"{_short(value)} is not valid: {error['msg']}"


def _refused(obj: Any, id_: Any, field: str, reason: str) -> SaveError:
    return SaveError(
        f"object {id_} ({type(obj).__name__}): field {field!r}: {reason}; nothing was written",
        id_, field,
    )


def _state_value(obj: Any, id_: Any) -> str:
    try:
        state = obj.execution.state
    except MISSING_ERRORS:
        return UNKNOWN_STATE
    if state is None:
        return UNKNOWN_STATE
    text = str(state)[:STATE_LENGTH]
    if not (text.isascii() and text.isprintable()):
        try:
            typemap.check_state(text)
        except typemap.Refused as exc:
            raise _refused(obj, id_, "state", str(exc)) from None
    return text



class RowBuilder:
    """Computes the column values of the row for an object.

    Built once per store from its table columns (and row model, for the Pydantic
    annotations and the type map's value policy); :meth:`values` is on the save
    hot path, so it does no lookups beyond one call per field.

    Attributes:
        fields (list[FieldSpec]): the extracted columns, ``state`` excluded.
        has_version (bool): the table has the bookkeeping columns.
    """

    def __init__(self, table: sa.Table, row_model: type[SQLModel] | None = None,
                 not_null: frozenset[str] = frozenset()) -> None:
        model_fields: Mapping[str, FieldInfo] = {}
        mapped: Mapping[str, FieldType] = {}
        if row_model is not None:
            model_fields = row_model.model_fields
            mapped = typemap.field_types(row_model, skip=BASE_COLUMNS)
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
            field_type = mapped.get(column.name)
            adapter, exact = None, frozenset[type]()
            check = None
            nullable = bool(column.nullable)
            if field is not None and field_type is not None and not lenient:
                adapter, exact = _validation(field, field_type)
                check = field_type.check
                nullable = field_type.nullable
            elif lenient:
                check = typemap.column_check(column.type)
            if nullable and column.name in not_null:
                # The row model says optional, the table's column is NOT NULL
                # (made when the field was required): None is refused here, by
                # the value policy, not by the database.
                log.warning("column %s.%s is NOT NULL but field %r is optional in the row "
                            "model: None is refused until a migration makes the column "
                            "nullable (docs/schema-evolution.md)", table.name, column.name,
                            column.name)
                nullable = False
            has_default = DEFAULT_KEY in column.info
            self.fields.append(FieldSpec(
                column.name, fast_accessor(extractor), column.info.get(DEFAULT_KEY), adapter,
                lenient, required=not has_default and not nullable, exact=exact, check=check,
                nullable=nullable,
            ))
        self.names = ["state", *(f.name for f in self.fields)]

    def values(self, obj: Any, id_: Any) -> list[Any]:
        """Return the column values for ``obj`` in the order of :attr:`names`.

        Raises :class:`SaveError` naming the field, ``id_`` and the reason if a
        value does not validate, the value policy refuses it, or a required
        value is missing; before any statement runs.
        """
        out: list[Any] = [_state_value(obj, id_)]
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
                raise _refused(obj, id_, spec.name, "no value and no default") from None
            value = spec.default
        except Exception as exc:
            if not spec.lenient:
                raise SaveError(
                    f"object {id_} ({type(obj).__name__}): extractor of field "
                    f"{spec.name!r} failed: {type(exc).__name__}: {exc}; nothing was written",
                    id_, spec.name,
                ) from exc
            log.warning("object %s: extractor of column %r failed (%s: %s); storing NULL",
                        id_, spec.name, type(exc).__name__, exc)
            return None
        if value is None:
            if spec.nullable:
                return None
            raise _refused(obj, id_, spec.name,
                           "None, but the field is not optional (annotate it 'X | None' "
                           "to store NULL; a column made NOT NULL by an earlier row model "
                           "also needs a migration)")
        if spec.adapter is not None and type(value) not in spec.exact:
            try:
                value = spec.adapter.validate_python(value)
            except ValidationError as exc:
                raise _refused(obj, id_, spec.name, _reason(exc, value)) from None
        if spec.check is not None:
            try:
                return spec.check(value)
            except typemap.Refused as exc:
                if spec.lenient:
                    log.warning("object %s: column %r: %s; storing NULL", id_, spec.name, exc)
                    return None
                raise _refused(obj, id_, spec.name, str(exc)) from None
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
