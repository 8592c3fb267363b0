"""Conditions written as text (``cores > 8 and state == 'RUNNING'``), parsed safely.

``typedstore ls --where EXPR`` takes a condition from the command line. It is
parsed with :mod:`ast` and never evaluated: :func:`parse_where` accepts only

* comparisons: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` (chained ones too:
  ``1 < cores <= 8``), ``in`` / ``not in`` a list or tuple of literals,
  ``is None`` / ``is not None``;
* ``and``, ``or``, ``not`` and parentheses;
* names of the table's columns, and literals: text, numbers (a leading ``-``
  too), ``True``, ``False``, ``None``.

Anything else (a call, an attribute, arithmetic, a subscript...) is a
:class:`~typedstore.errors.QueryError` naming the piece of text refused, and a
name that is not a column is one naming it and listing the columns. The
result is a SQLAlchemy condition on the given table, for
:meth:`typedstore.Store.query` (which applies its portable semantics and
value checks to it).
"""

from __future__ import annotations

import ast
import datetime as dt
import enum
import operator
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from .errors import QueryError

__all__ = ["MAX_LENGTH", "parse_where"]

#: The longest condition accepted, in characters.
MAX_LENGTH = 4000

_COMPARISONS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
#: The comparison with its sides swapped (``8 < cores`` is ``cores > 8``).
_SWAPPED: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.Eq, ast.NotEq: ast.NotEq, ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt,
    ast.GtE: ast.LtE,
}
_SYMBOLS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
            ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in", ast.Is: "is", ast.IsNot: "is not"}
#: What a refused node is, for the message.
_WHAT: dict[type[ast.AST], str] = {
    ast.Call: "a function call", ast.Attribute: "an attribute", ast.Subscript: "a subscript",
    ast.BinOp: "arithmetic", ast.Lambda: "a lambda", ast.IfExp: "a conditional expression",
    ast.Dict: "a dict", ast.Set: "a set", ast.ListComp: "a comprehension",
    ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
    ast.GeneratorExp: "a comprehension", ast.Await: "await", ast.Yield: "yield",
    ast.YieldFrom: "yield", ast.JoinedStr: "an f-string", ast.NamedExpr: "an assignment",
    ast.Starred: "a starred expression", ast.Slice: "a slice",
}
_ALLOWED = ("comparisons (== != < <= > >= in, not in, is None) of column names with "
            "literals, joined by and, or, not")


def parse_where(text: str, table: sa.Table, columns: Sequence[str] | None = None
                ) -> sa.ColumnElement[bool]:
    """The condition ``text`` over ``table``'s columns.

    Args:
        text: the condition, e.g. ``"cores > 8 and state == 'RUNNING'"``.
        table: the table whose columns names refer to.
        columns: the names that may be used (default: every column of ``table``).

    Returns a SQLAlchemy boolean expression. Raises
    :class:`~typedstore.errors.QueryError` (a ``ValueError``) for text that
    is not such a condition: a syntax error, a refused construct (named with
    its text), a name that is not a column (named, with the columns listed),
    a literal of the wrong kind for its column.
    """
    known = list(columns) if columns is not None else list(table.c.keys())
    if len(text) > MAX_LENGTH:
        raise QueryError(f"where: the condition is {len(text)} characters long; at most "
                         f"{MAX_LENGTH} are accepted")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise QueryError(f"where: {text!r} is not a valid condition ({exc.msg}{where}); "
                         f"use {_ALLOWED}") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, deep nesting
        raise QueryError(f"where: {text!r} cannot be parsed ({type(exc).__name__}); "
                         f"use {_ALLOWED}") from None
    return _Builder(text.strip(), table, known).condition(tree.body)


class _Builder:
    def __init__(self, text: str, table: sa.Table, known: list[str]) -> None:
        self.text = text
        self.table = table
        self.known = known

    def _source(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or type(node).__name__

    def _refuse(self, node: ast.AST, why: str | None = None) -> QueryError:
        what = why or _WHAT.get(type(node), f"not allowed ({type(node).__name__})")
        return QueryError(f"where: {self._source(node)!r} is {what}; only {_ALLOWED} "
                          "are allowed")

    def condition(self, node: ast.expr) -> sa.ColumnElement[bool]:
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(value) for value in node.values]
            return sa.and_(*parts) if isinstance(node.op, ast.And) else sa.or_(*parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return sa.not_(self.condition(node.operand))
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.Name):
            self._column(node)
            raise self._refuse(node, "a column alone, not a condition (compare it: "
                                     f"{node.id} == True, {node.id} is not None)")
        if isinstance(node, (ast.Constant, ast.UnaryOp, ast.List, ast.Tuple)):
            raise self._refuse(node, "a value alone, not a condition")
        raise self._refuse(node)

    def _column(self, node: ast.Name) -> sa.Column[Any]:
        if node.id not in self.known:
            raise QueryError(f"where: unknown column {node.id!r}; known columns: "
                             f"{', '.join(self.known)}", node.id)
        return self.table.c[node.id]

    def _compare(self, node: ast.Compare) -> sa.ColumnElement[bool]:
        parts: list[sa.ColumnElement[bool]] = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(self._pair(node, left, op, right))
            left = right
        return parts[0] if len(parts) == 1 else sa.and_(*parts)

    def _pair(self, whole: ast.Compare, left: ast.expr, op: ast.cmpop, right: ast.expr
              ) -> sa.ColumnElement[bool]:
        if not isinstance(left, ast.Name) and isinstance(right, ast.Name) \
                and type(op) in _SWAPPED:
            left, right, op = right, left, _SWAPPED[type(op)]()
        if not isinstance(left, ast.Name):
            if isinstance(left, (ast.Constant, ast.UnaryOp, ast.List, ast.Tuple)):
                raise self._refuse(whole, "a comparison without a column")
            raise self._refuse(left)
        column = self._column(left)
        symbol = _SYMBOLS.get(type(op), type(op).__name__)
        if isinstance(right, ast.Name):
            other = self._column(right)
            if type(op) not in _COMPARISONS:
                raise self._refuse(whole, f"'{symbol}' between two columns (only == != < <= "
                                          "> >= compare columns)")
            return _COMPARISONS[type(op)](column, other)  # type: ignore[no-any-return]
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.List, ast.Tuple)):
                raise self._refuse(right, f"not a list or tuple of literals (after '{symbol}')")
            values = [self._literal(item, column) for item in right.elts]
            return column.in_(values) if isinstance(op, ast.In) else column.not_in(values)
        value = self._literal(right, column)
        if isinstance(op, (ast.Is, ast.IsNot)):
            if value is not None:
                raise self._refuse(whole, f"'{symbol}' with something other than None "
                                          "(use == or != for values)")
            return column.is_(None) if isinstance(op, ast.Is) else column.is_not(None)
        if value is None and isinstance(op, (ast.Eq, ast.NotEq)):
            return column.is_(None) if isinstance(op, ast.Eq) else column.is_not(None)
        if value is None:
            raise self._refuse(whole, f"a comparison '{symbol}' with None")
        return _COMPARISONS[type(op)](column, value)  # type: ignore[no-any-return]

    def _literal(self, node: ast.expr, column: sa.Column[Any]) -> Any:
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
                and isinstance(node.operand, ast.Constant) \
                and type(node.operand.value) in (int, float):
            number: Any = node.operand.value
            value: Any = -number if isinstance(node.op, ast.USub) else number
        elif isinstance(node, ast.Constant) and (
                node.value is None or type(node.value) in (str, int, float, bool)):
            value = node.value
        elif isinstance(node, ast.Name):
            raise self._refuse(node, "a column where a literal is needed")
        elif isinstance(node, ast.Constant):
            raise self._refuse(node, f"a {type(node.value).__name__} literal (text, "
                                     "numbers, True, False and None are accepted)")
        else:
            raise self._refuse(node)
        return self._fitted(node, value, column)

    def _fitted(self, node: ast.expr, value: Any, column: sa.Column[Any]) -> Any:
        """``value`` as a value of ``column``'s kind: ISO text for a date/time
        column becomes a datetime, text for a UUID column a UUID, a member's
        name for an enum column the member; a literal of another kind is refused."""
        if value is None:
            return None
        try:
            kind: Any = column.type.python_type
        except NotImplementedError:  # a type that does not say: the database decides
            return value
        text = self._source(node)
        if kind in (dt.datetime, dt.date, dt.time) and isinstance(value, str):
            try:
                return kind.fromisoformat(value)
            except ValueError:
                raise QueryError(f"where: {text} is not an ISO {kind.__name__} for column "
                                 f"{column.name!r}", column.name, value) from None
        if isinstance(kind, type) and issubclass(kind, enum.Enum) and isinstance(value, str):
            member = kind.__members__.get(value)  # the name, as the column shows it
            if member is None:
                raise QueryError(f"where: {text} is not a member of {kind.__name__} (column "
                                 f"{column.name!r}: {', '.join(kind.__members__)})",
                                 column.name, value)
            return member
        if kind is uuid.UUID and isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                raise QueryError(f"where: {text} is not a UUID for column {column.name!r}",
                                 column.name, value) from None
        numeric = kind in (int, float) or getattr(kind, "__name__", "") == "Decimal"
        if numeric and not isinstance(value, (int, float)):
            raise QueryError(f"where: column {column.name!r} holds numbers, not "
                             f"{type(value).__name__} ({text})", column.name, value)
        if kind is str and not isinstance(value, str):
            raise QueryError(f"where: column {column.name!r} holds text; quote the value "
                             f"({text!r} is a {type(value).__name__})", column.name, value)
        if kind is bool and not isinstance(value, (bool, int)):
            raise QueryError(f"where: column {column.name!r} holds True or False, not "
                             f"{type(value).__name__} ({text})", column.name, value)
        return value
