"""Conforming data to a declared table schema (shared by the driver-side and executor-side writers)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.types as pat

from lake.errors import SchemaMismatchError
from lake.schemas import TableSpec


def _kind(t: pa.DataType) -> str:
    if pat.is_integer(t):
        return "int"
    if pat.is_floating(t):
        return "float"
    if pat.is_string(t) or pat.is_large_string(t):
        return "string"
    if pat.is_timestamp(t):
        return "timestamp"
    if pat.is_boolean(t):
        return "bool"
    if pat.is_list(t) or pat.is_large_list(t):
        return "list<" + _kind(t.value_type) + ">"
    if pat.is_null(t):
        return "null"
    return str(t)


def castable(src: pa.DataType, dst: pa.DataType) -> bool:
    """Only casts that cannot change meaning: widths within a kind, ints to floats, an all-null column."""
    s, d = _kind(src), _kind(dst)
    return s == d or s == "null" or (s == "int" and d == "float")


def check_columns(names: list[str], spec: TableSpec) -> None:
    expected = spec.schema.names
    missing = [n for n in expected if n not in names]
    extra = [n for n in names if n not in expected]
    if missing or extra:
        raise SchemaMismatchError(
            f"table '{spec.name}': missing columns {missing}, unexpected columns {extra}. "
            f"Its schema is declared in lake/schemas.py; change it there on purpose or fix the writer."
        )


def conform(data: pa.Table | pa.RecordBatch, spec: TableSpec) -> pa.Table:
    """``data`` with the spec's column order and exact types, or SchemaMismatchError saying what differs."""
    check_columns(data.schema.names, spec)
    columns = []
    for field in spec.schema:
        column = data.column(field.name)
        if not column.type.equals(field.type):
            if not castable(column.type, field.type):
                raise SchemaMismatchError(
                    f"table '{spec.name}', column '{field.name}': got {column.type}, declared {field.type}"
                )
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaMismatchError(
                    f"table '{spec.name}', column '{field.name}': cannot cast {column.type} to {field.type}: {exc}"
                ) from exc
        if not field.nullable and column.null_count:
            raise SchemaMismatchError(
                f"table '{spec.name}', column '{field.name}' has {column.null_count} null(s) but is declared non-null"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=spec.schema)
