"""Compile a metadata filter (JSON, Mongo-like) into a parameterised SQL expression.

The filter is a JSON object over the keys of a chunk's ``metadata jsonb``::

    {"lang": "en"}                              shorthand for {"lang": {"$eq": "en"}}
    {"year": {"$gte": 2000, "$lt": 2010}}       several operators on a key are ANDed
    {"author.name": {"$in": ["Ann", "Bo"]}}     dotted key = path into nested objects
    {"$or": [{"lang": "en"}, {"$and": [...]}]}  logical operators nest (10 levels max)

Several entries at one level are ANDed. Operators and their semantics:

* ``$eq`` / ``$ne``: a string, number, boolean or null. ``$eq: null`` matches a key
  that is missing *or* holds JSON null; ``$ne: null`` matches a key that is present
  and not null. ``$ne: v`` is true when the key is missing or differs (as in Mongo).
* ``$gt`` ``$gte`` ``$lt`` ``$lte``: a number or a string; a row matches only when
  the stored value has the same JSON type and compares accordingly (strings in
  collation order).
* ``$in`` / ``$nin``: a non-empty list (at most 1000) of strings, numbers, booleans;
  ``$nin`` is true when the key is missing.
* ``$exists``: a boolean; a key holding JSON null exists.

A filter is bounded in breadth as well as depth: at most 2000 nodes in all (keys, operators and
list values), so one request cannot make a statement with more parameters than PostgreSQL takes.
Keys and string values must not contain NUL (PostgreSQL text cannot hold it).

Numbers compare by value (2020 equals 2020.0). Keys and values never enter the SQL
text: paths travel as ``text[]`` parameters, values as ``jsonb`` ones, and jsonb is
only compared with jsonb, so nothing can fail at run time whatever the stored data.
Metadata keys that start with ``$`` or contain ``.`` cannot be addressed. A dotted
segment that is an integer indexes into an array (``"authors.0"``). Mistakes raise
:class:`~ragtune_common.errors.InvalidArgument` whose ``field`` is the offending path,
e.g. ``filter.$and[1].year.$gt``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, NoReturn

from psycopg import sql
from psycopg.types.json import Jsonb

from ragtune_common.errors import InvalidArgument

MAX_DEPTH = 10
MAX_IN_VALUES = 1000
MAX_NODES = 2000
_COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_OPERATORS = ("$eq", "$ne", *_COMPARISONS, "$in", "$nin", "$exists")
_LOGICAL = ("$and", "$or")
_SCALARS = ("string", "number", "boolean")
_TRUE = sql.SQL("TRUE")
_METADATA = sql.SQL("c.metadata")
_TEMPLATES = {
    "$eq": "({} = {})",
    "$ne": "({} IS DISTINCT FROM {})",
    "$eq null": "(COALESCE({}, 'null'::jsonb) = 'null'::jsonb)",
    "$ne null": "(COALESCE({}, 'null'::jsonb) <> 'null'::jsonb)",
    "$in": "({} = ANY({}))",
    "$nin": "(NOT COALESCE({} = ANY({}), FALSE))",
    "$exists": "({} IS NOT NULL)",
    "$exists false": "({} IS NULL)",
}


def compile_filter(
    spec: Mapping[str, Any] | None,
    column: sql.Composable = _METADATA,
    field: str = "filter",
) -> tuple[sql.Composable, list[Any]]:
    """Return ``(expression, params)``; ``None`` or ``{}`` gives ``(TRUE, [])``."""
    if spec is None:
        return _TRUE, []
    compiler = _Compiler(column)
    return compiler.filter(spec, field, 1), compiler.params


def _fail(field: str, message: str) -> NoReturn:
    raise InvalidArgument(message, field=field)


def _kind(value: Any) -> str:
    """The JSON type name of a Python value, for checks and error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "list"
    return "object" if isinstance(value, Mapping) else type(value).__name__


def _check(value: Any, field: str, allowed: tuple[str, ...], what: str) -> None:
    if _kind(value) not in allowed:
        _fail(field, f"{what} must be {' or '.join(allowed)}, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        _fail(field, f"{what} must be a finite number, got {value}")
    if isinstance(value, str) and "\x00" in value:
        _fail(field, f"{what} must not contain NUL (\\x00) characters")


def _join(parts: list[sql.Composable], op: str) -> sql.Composable:
    if len(parts) <= 1:
        return parts[0] if parts else _TRUE
    return sql.SQL("(") + sql.SQL(f" {op} ").join(parts) + sql.SQL(")")


class _Compiler:
    """Walks a filter; placeholders are made in text order, so ``params`` lines up."""

    def __init__(self, column: sql.Composable) -> None:
        self.column = column
        self.params: list[Any] = []
        self.nodes = 0

    def _count(self, field: str, n: int = 1) -> None:
        """Spend ``n`` of the filter's node budget; ``field`` is where it ran out."""
        self.nodes += n
        if self.nodes > MAX_NODES:
            _fail(field, f"filter has more than {MAX_NODES} nodes (keys, operators and values) in all")

    def _param(self, value: Any) -> sql.Composable:
        self.params.append(value)
        return sql.Placeholder()

    def _path(self, segments: list[str]) -> sql.Composable:
        return sql.SQL("({} #> {}::text[])").format(self.column, self._param(segments))

    def filter(self, spec: Any, field: str, depth: int) -> sql.Composable:
        if not isinstance(spec, Mapping):
            _fail(field, f"a filter must be a JSON object, got {_kind(spec)}")
        if depth > MAX_DEPTH:
            _fail(field, f"filter is nested deeper than {MAX_DEPTH} levels")
        parts: list[sql.Composable] = []
        for key, value in spec.items():
            sub = f"{field}.{key}"
            if not isinstance(key, str) or not key:
                _fail(sub, "metadata key must be a non-empty string")
            if "\x00" in key:  # named escaped: a NUL cannot travel in a status message
                _fail(sub.replace("\x00", "\\x00"), "key must not contain NUL (\\x00) characters")
            self._count(sub)
            if key in _LOGICAL:
                if not isinstance(value, list | tuple) or not value:
                    _fail(sub, f"{key} takes a non-empty list of filter objects")
                items = []
                for i, item in enumerate(value):
                    self._count(f"{sub}[{i}]")
                    items.append(self.filter(item, f"{sub}[{i}]", depth + 1))
                parts.append(_join(items, key[1:].upper()))
            elif key in _OPERATORS:
                _fail(
                    sub,
                    f'{key} needs a metadata key, e.g. {{"year": {{"{key}": ...}}}}',
                )
            elif key.startswith("$"):
                supported = ", ".join((*_OPERATORS, *_LOGICAL))
                _fail(sub, f"unknown operator {key}; supported: {supported}")
            else:
                parts.append(self.key(key, value, sub))
        return _join(parts, "AND")

    def key(self, key: str, value: Any, field: str) -> sql.Composable:
        segments = key.split(".")
        if not all(segments):
            _fail(field, "dotted key has an empty segment (e.g. 'a..b')")
        if not isinstance(value, Mapping):
            return self.op("$eq", value, segments, field)
        if not value:
            _fail(field, 'empty condition; use an operator such as {"$eq": ...}')
        dollars = [str(k).startswith("$") for k in value]
        if any(dollars) and not all(dollars):
            _fail(field, "condition mixes operators and plain keys")
        if not any(dollars):
            _fail(field, "object values are not supported; use a dotted key (a.b)")
        conds = []
        for o, v in value.items():
            self._count(f"{field}.{o}")
            conds.append(self.op(o, v, segments, f"{field}.{o}"))
        return _join(conds, "AND")

    def op(self, op: str, value: Any, segs: list[str], field: str) -> sql.Composable:
        if op in ("$eq", "$ne"):
            _check(value, field, (*_SCALARS, "null"), op)
            if value is None:
                return sql.SQL(_TEMPLATES[f"{op} null"]).format(self._path(segs))
            tmpl = _TEMPLATES[op]
            return sql.SQL(tmpl).format(self._path(segs), self._param(Jsonb(value)))
        if op in _COMPARISONS:
            _check(value, field, ("number", "string"), op)
            # jsonb compares with jsonb without ever raising; the type guard keeps
            # numbers with numbers and strings with strings.
            guard = f"jsonb_typeof({{}}) = '{_kind(value)}'"
            tmpl = f"({guard} AND {{}} {_COMPARISONS[op]} {{}})"
            path, path2 = self._path(segs), self._path(segs)
            return sql.SQL(tmpl).format(path, path2, self._param(Jsonb(value)))
        if op in ("$in", "$nin"):
            if not isinstance(value, list | tuple) or not 0 < len(value) <= MAX_IN_VALUES:
                _fail(
                    field,
                    f"{op} takes a non-empty list of at most {MAX_IN_VALUES} values",
                )
            self._count(field, len(value))
            for i, item in enumerate(value):
                _check(item, f"{field}[{i}]", _SCALARS, f"{op} value")
            path = self._path(segs)  # before the list: params follow text order
            items = self._param([Jsonb(v) for v in value])
            return sql.SQL(_TEMPLATES[op]).format(path, items)
        if op == "$exists":
            _check(value, field, ("boolean",), op)
            tmpl = _TEMPLATES["$exists" if value else "$exists false"]
            return sql.SQL(tmpl).format(self._path(segs))
        if op in _LOGICAL:
            _fail(field, f"{op} must be used at filter level, not on a key")
        _fail(field, f"unknown operator {op}; supported: {', '.join(_OPERATORS)}")
