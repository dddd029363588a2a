"""The schema of a dataset version: per column its kind, Arrow type, nullability and categories.

``kind`` is what the rest of kyklos cares about (preprocessing, profiles, drift statistics):

========== =====================================================================
numeric    integers and floats (also low-cardinality ones such as ``month``), and
           a column without any value (its type cannot be known from a CSV)
categorical strings; ``categories`` lists the values when there are at most
           ``max_categories`` of them, else it is ``None`` (high cardinality)
boolean    booleans
datetime   timestamps and dates
========== =====================================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from kyklos.errors import DataError

__all__ = [
    "KINDS",
    "ColumnSchema",
    "Kind",
    "SchemaChange",
    "TableSchema",
    "infer_schema",
    "kind_of",
    "schema_changes",
]

Kind = Literal["numeric", "categorical", "boolean", "datetime"]
KINDS: tuple[Kind, ...] = ("numeric", "categorical", "boolean", "datetime")
SCHEMA_FORMAT = "kyklos.schema/1"


@dataclass(frozen=True)
class ColumnSchema:
    """One column: ``kind`` (see the module docstring), canonical Arrow type, nulls, categories."""

    name: str
    kind: Kind
    arrow_type: str
    nullable: bool
    null_count: int
    categories: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "arrow_type": self.arrow_type,
            "nullable": self.nullable,
            "null_count": self.null_count,
            "categories": list(self.categories) if self.categories is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnSchema:
        kind = str(data["kind"])
        if kind not in KINDS:
            raise DataError(f"schema column {data.get('name')!r}: unknown kind {kind!r}")
        categories = data.get("categories")
        return cls(
            name=str(data["name"]),
            kind=kind,
            arrow_type=str(data["arrow_type"]),
            nullable=bool(data["nullable"]),
            null_count=int(data["null_count"]),
            categories=[str(c) for c in categories] if categories is not None else None,
        )


@dataclass(frozen=True)
class TableSchema:
    """The columns of a table, in canonical (name) order."""

    columns: tuple[ColumnSchema, ...]

    def __iter__(self) -> Iterator[ColumnSchema]:
        return iter(self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.columns)

    def __getitem__(self, name: str) -> ColumnSchema:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def of_kind(self, kind: Kind) -> list[str]:
        """Names of the columns of one kind."""
        return [c.name for c in self.columns if c.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"format": SCHEMA_FORMAT, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TableSchema:
        fmt = data.get("format")
        if fmt != SCHEMA_FORMAT:
            raise DataError(f"unsupported schema format {fmt!r}; expected {SCHEMA_FORMAT!r}")
        return cls(tuple(ColumnSchema.from_dict(c) for c in data["columns"]))


def kind_of(arrow_type: pa.DataType) -> Kind:
    """The kind of a (canonical) Arrow type."""
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if (
        pa.types.is_string(arrow_type)
        or pa.types.is_large_string(arrow_type)
        or pa.types.is_dictionary(arrow_type)
    ):
        return "categorical"
    if (
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_decimal(arrow_type)
        or pa.types.is_null(arrow_type)
    ):
        return "numeric"
    raise DataError(f"no kind for Arrow type {arrow_type}; canonicalize the table first")


def infer_schema(table: pa.Table, *, max_categories: int = 50) -> TableSchema:
    """The schema of a (canonical) table; categories are listed up to ``max_categories`` values."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = kind_of(column.type)
        categories = None
        if kind == "categorical":
            distinct = pc.unique(column.drop_null())
            if len(distinct) <= max_categories:
                categories = sorted(str(v) for v in distinct.to_pylist())
        nulls = column.null_count
        columns.append(
            ColumnSchema(
                name=name,
                kind=kind,
                arrow_type=str(column.type),
                nullable=nulls > 0,
                null_count=nulls,
                categories=categories,
            )
        )
    return TableSchema(tuple(columns))


@dataclass(frozen=True)
class SchemaChange:
    """One difference between two schemas.

    ``change`` is one of ``added``, ``removed``, ``type_changed``, ``kind_changed``,
    ``nullability_changed``, ``new_categories``, ``removed_categories``.
    """

    column: str
    change: str
    old: Any = None
    new: Any = None
    values: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.change == "added":
            return f"{self.column}: added ({self.new})"
        if self.change == "removed":
            return f"{self.column}: removed (was {self.old})"
        if self.change in {"new_categories", "removed_categories"}:
            shown = ", ".join(self.values[:10]) + (" ..." if len(self.values) > 10 else "")
            verb = "new" if self.change == "new_categories" else "vanished"
            return f"{self.column}: {len(self.values)} {verb} categor{'y' if len(self.values) == 1 else 'ies'}: {shown}"
        label = self.change.removesuffix("_changed")
        return f"{self.column}: {label} {self.old} -> {self.new}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "column": self.column,
            "change": self.change,
            "old": self.old,
            "new": self.new,
            "values": list(self.values),
            "message": self.message,
        }


def schema_changes(old: TableSchema, new: TableSchema) -> list[SchemaChange]:
    """Every difference from ``old`` to ``new``, in column order (added/removed first)."""
    changes: list[SchemaChange] = []
    old_names, new_names = set(old.names), set(new.names)
    for name in sorted(new_names - old_names):
        changes.append(SchemaChange(name, "added", new=new[name].arrow_type))
    for name in sorted(old_names - new_names):
        changes.append(SchemaChange(name, "removed", old=old[name].arrow_type))
    for name in sorted(old_names & new_names):
        a, b = old[name], new[name]
        if a.kind != b.kind:
            changes.append(SchemaChange(name, "kind_changed", a.kind, b.kind))
        if a.arrow_type != b.arrow_type:
            changes.append(SchemaChange(name, "type_changed", a.arrow_type, b.arrow_type))
        if a.nullable != b.nullable:
            changes.append(SchemaChange(name, "nullability_changed", a.nullable, b.nullable))
        if a.categories is not None and b.categories is not None:
            added = sorted(set(b.categories) - set(a.categories))
            gone = sorted(set(a.categories) - set(b.categories))
            if added:
                changes.append(SchemaChange(name, "new_categories", values=added))
            if gone:
                changes.append(SchemaChange(name, "removed_categories", values=gone))
    return changes
