"""Dataset versions: content-addressed snapshots with schema, reference profile, diff and lineage.

Importing this package imports numpy and pyarrow; the CLI imports it inside command bodies only.
"""

from kyklos.data.diff import ColumnShift, DatasetDiff, diff_versions, js_distance, psi
from kyklos.data.lineage import (
    LineageEdge,
    LineageGraph,
    LineageNode,
    lineage,
    record_run_input,
    resolve_ref,
)
from kyklos.data.profile import (
    ColumnProfile,
    TableProfile,
    bin_edges,
    histogram_on,
    numeric_values,
    profile_column,
    profile_table,
)
from kyklos.data.schema import ColumnSchema, SchemaChange, TableSchema, infer_schema, schema_changes
from kyklos.data.table import (
    DigestCache,
    canonicalize,
    content_digest,
    detect_format,
    file_digest,
    read_table,
)
from kyklos.data.versions import DatasetStore, DatasetVersion, dataset_key, version_id

__all__ = [
    "ColumnProfile",
    "ColumnSchema",
    "ColumnShift",
    "DatasetDiff",
    "DatasetStore",
    "DatasetVersion",
    "DigestCache",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "SchemaChange",
    "TableProfile",
    "TableSchema",
    "bin_edges",
    "canonicalize",
    "content_digest",
    "dataset_key",
    "detect_format",
    "diff_versions",
    "file_digest",
    "histogram_on",
    "infer_schema",
    "js_distance",
    "lineage",
    "numeric_values",
    "profile_column",
    "profile_table",
    "psi",
    "read_table",
    "record_run_input",
    "resolve_ref",
    "schema_changes",
    "version_id",
]
