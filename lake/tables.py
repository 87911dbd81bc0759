"""Named Delta tables under one lake root: the only module that knows how tables are stored.

Verbs: ``create``, ``write`` (replace one partition or every partition matching partition-column values,
append or overwrite, each one atomic commit),
``read`` (Arrow), ``read_spark``, ``file_uris`` (for Petastorm), ``version``, ``history``, ``partitions``.

Arrow data is always committed with delta-rs (``deltalake``). Spark DataFrames go through the backend
``lake.spark_backend`` names; both write the same Delta format:
- delta-rs: the executors write Parquet in parallel and the driver commits them in one delta-rs
  transaction (see ``lake._spark_writer``); no JVM jars needed;
- delta-spark: Delta Lake's own Spark writer and reader (``lake._delta_spark``), with its jars on the
  classpath (``spark.jars_dir``).
Arrow reads and table metadata (versions, history, partitions, files) go through the Delta log with
delta-rs, so either backend's tables read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFound

from lake._arrow import check_columns, conform
from lake._faults import held_before_commit
from lake.config import Config, LakeSettings
from lake.errors import ConcurrentWriteError, ConfigError, SchemaMismatchError, TableNotFoundError
from lake.schemas import TableSpec, spec
from lake.storage import refuse_credentials

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["Lake", "WriteMode"]

WriteMode = Literal["replace_partition", "replace_where", "append", "overwrite"]


def _is_spark_dataframe(data: Any) -> bool:
    return type(data).__module__.startswith("pyspark.sql")


class Lake:
    """The lake root and its named tables.

    Args:
        settings: the ``lake`` config section (root, Spark backend, storage options).
        spark: the session used for Spark reads and writes; needed only by ``read_spark`` and Spark writes.
    """

    def __init__(self, settings: LakeSettings, *, spark: SparkSession | None = None) -> None:
        self.settings = settings
        self.root = settings.root.rstrip("/")
        refuse_credentials(settings.storage_options, "lake.storage_options")
        self.storage_options: dict[str, str] = {k: str(v) for k, v in settings.storage_options.items()}
        self.spark = spark
        self._spark_backend: str | None = None

    @classmethod
    def from_config(cls, config: Config, *, spark: SparkSession | None = None) -> Lake:
        return cls(config.lake, spark=spark)

    # -- naming -----------------------------------------------------------------------------------
    def uri(self, name: str) -> str:
        """Where table ``name`` lives."""
        spec(name)
        if "://" in self.root:
            return f"{self.root}/{name}"
        import os

        return os.path.abspath(os.path.join(self.root, name))

    def exists(self, name: str) -> bool:
        try:
            self._table(name)
            return True
        except TableNotFoundError:
            return False

    def _table(self, name: str, version: int | None = None) -> DeltaTable:
        try:
            return DeltaTable(self.uri(name), version=version, storage_options=self.storage_options or None)
        except DeltaTableNotFound:
            raise TableNotFoundError(
                f"table '{name}' does not exist under {self.root}; run the stage that writes it first"
            ) from None

    # -- writing ----------------------------------------------------------------------------------
    def create(self, name: str) -> None:
        """Create table ``name`` with its declared schema if missing; check the schema if present."""
        table_spec = spec(name)
        if self.exists(name):
            self._check_stored_schema(table_spec)
            return
        if "://" not in self.root:
            self._create_local(name, table_spec)
            return
        try:
            self._create_at(self.uri(name), table_spec)
        except DeltaError:
            # a racing creator's first commit won: the object store refused ours (conditional put)
            if not self.exists(name):
                raise
            self._check_stored_schema(table_spec)

    def _create_at(self, uri: str, table_spec: TableSpec) -> None:
        DeltaTable.create(
            uri, table_spec.schema, mode="ignore",
            partition_by=table_spec.partition_columns or None,
            storage_options=self.storage_options or None,
        )

    def _create_local(self, name: str, table_spec: TableSpec) -> None:
        """Create the table aside and rename it into place, so that of two racing creators only one does.

        delta-rs lets the loser of a create race commit a second CREATE TABLE (a new table id) on top of
        the winner's; a directory rename onto a non-empty directory fails instead, atomically.
        """
        import errno
        import os
        import shutil
        import uuid

        final = self.uri(name)
        staging = os.path.join(os.path.dirname(final), f".{name}.creating-{uuid.uuid4().hex}")
        os.makedirs(staging)  # the umask's permissions, as the table folder would get
        try:
            self._create_at(staging, table_spec)
            try:
                os.rename(staging, final)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _check_stored_schema(self, table_spec: TableSpec) -> None:
        table = self._table(table_spec.name)
        stored = pa.schema(table.schema())
        declared = [(f.name, f.type) for f in table_spec.schema] + [("partitioned by", table_spec.partition_columns)]
        actual = [(f.name, f.type) for f in stored] + [("partitioned by", list(table.metadata().partition_columns))]
        if declared != actual:
            raise SchemaMismatchError(
                f"table '{table_spec.name}' at {self.uri(table_spec.name)} was created with {actual} but "
                f"lake/schemas.py declares {declared}. Migrate the table on purpose (or point lake.root "
                f"elsewhere); seqrec never changes a table's schema silently."
            )

    def write(
        self,
        name: str,
        data: pa.Table | pd.DataFrame | DataFrame,
        *,
        partition: str | None = None,
        where: Mapping[str, str] | None = None,
        mode: WriteMode = "replace_partition",
    ) -> int:
        """Commit ``data`` to table ``name`` atomically and return the new table version.

        Args:
            name: a table declared in ``lake.schemas``.
            data: an Arrow table, a pandas DataFrame or a Spark DataFrame (written by the executors).
            partition: with ``replace_partition``, the value of the table's partition column to replace;
                every row must carry it.
            where: with ``replace_where``, partition-column values, e.g. ``{"drop_id": d}``: every partition
                they match is replaced (here one drop's rows, in every day); every row must carry them.
            mode: ``replace_partition`` (default) swaps exactly that partition and leaves the others;
                ``replace_where`` swaps the partitions ``where`` matches; ``append`` adds rows; ``overwrite``
                replaces the whole table.
        """
        table_spec = spec(name)
        replaced = _replaced(table_spec, mode, partition, where)
        self.create(name)
        if _is_spark_dataframe(data):
            self._write_spark(table_spec, data, mode, replaced)
        else:
            self._write_arrow(table_spec, data, mode, replaced)
        return self.version(name)

    def _write_arrow(self, table_spec: TableSpec, data: Any, mode: WriteMode, replaced: dict[str, str] | None) -> None:
        if not isinstance(data, pa.Table):
            data = pa.Table.from_pandas(data, preserve_index=False)
        data = conform(data, table_spec)
        predicate = None
        if replaced is not None:
            for column, value in replaced.items():
                values = set(data.column(column).unique().to_pylist())
                if values - {value}:
                    raise SchemaMismatchError(
                        f"table '{table_spec.name}': replacing {column}={value} but rows hold {sorted(values)}"
                    )
            predicate = " AND ".join(f"{column} = '{_quoted(value)}'" for column, value in replaced.items())
        try:
            write_deltalake(
                self.uri(table_spec.name), held_before_commit(table_spec.name, data),
                mode="append" if mode == "append" else "overwrite",
                predicate=predicate,
                partition_by=table_spec.partition_columns or None,
                storage_options=self.storage_options or None,
            )
        except CommitFailedError as exc:
            raise ConcurrentWriteError(
                f"table '{table_spec.name}': another writer committed first ({exc}); rerun the task"
            ) from exc

    def _write_spark(self, table_spec: TableSpec, df: DataFrame, mode: WriteMode,
                     replaced: dict[str, str] | None) -> None:
        check_columns(df.columns, table_spec)
        df = df.select(*table_spec.schema.names)
        if self._spark_backend_for(df.sparkSession) == "delta-spark":
            from lake._delta_spark import write_delta_spark

            try:
                write_delta_spark(df, self.uri(table_spec.name), table_spec, mode, replaced)
            except ConcurrentWriteError:
                raise
            except Exception as exc:
                raise _lake_error_from_worker(exc) from exc
            return
        from lake._spark_writer import SOURCE_NAME, DeltaRsSource

        df.sparkSession.dataSource.register(DeltaRsSource)
        writer = (
            df.write.format(SOURCE_NAME)
            .mode("append")
            .option("table", table_spec.name)
            .option("root", self.uri(table_spec.name))
            .option("mode", mode)
            .option("replaced", json.dumps(replaced))
            .option("storage_options", json.dumps(self.storage_options))
        )
        try:
            writer.save()
        except Exception as exc:
            raise _lake_error_from_worker(exc) from exc

    def republish(self, source: str, *, version: int, partition: str, into: str) -> int:
        """Overwrite table ``into`` with partition ``partition`` of ``source`` as of ``version`` and return
        ``into``'s new version: exactly those rows, file by file (lake/_republish.py), in one commit.

        ``into`` must declare ``source``'s columns and no partitioning: it stores the partition column as an
        ordinary column. With a Spark session the executors copy the files, one task each.
        """
        from lake._republish import FileCopy, new_prefix, republish

        source_spec, target_spec = spec(source), spec(into)
        column = source_spec.partition_by
        if column is None or target_spec.partition_columns or source_spec.schema != target_spec.schema:
            raise ValueError(f"republish copies one partition of a partitioned table into an unpartitioned table "
                             f"of the same columns; '{source}' and '{into}' are not such a pair")
        self.create(into)
        root, uris = self._snapshot_files(source, version, partition)
        copy = FileCopy(source_root=root, target_root=self.uri(into), target=into, column=column, value=partition,
                        storage_options=self.storage_options, prefix=new_prefix())
        republish(self.spark, copy, _relative(root, uris))
        return self.version(into)

    def _spark_backend_for(self, spark: SparkSession) -> str:
        """``lake.spark_backend`` resolved for this session: auto picks delta-spark when Delta's jars load."""
        if self._spark_backend is None:
            from lake.spark import delta_jars_loaded

            backend = self.settings.spark_backend
            if backend == "auto":
                backend = "delta-spark" if delta_jars_loaded(spark) else "delta-rs"
            elif backend == "delta-spark" and not delta_jars_loaded(spark):
                raise ConfigError("lake.spark_backend is delta-spark but the Spark session cannot load Delta's "
                                  "classes; start it with lake.spark.get_spark (it adds spark.jars_dir's jars)")
            self._spark_backend = backend
        return self._spark_backend

    # -- reading ----------------------------------------------------------------------------------
    def file_uris(self, name: str, *, version: int | None = None, partition: str | None = None,
                  where: Mapping[str, str] | None = None) -> list[str]:
        """The Parquet files of a snapshot (optionally of one partition, or of the partitions ``where``
        matches), e.g. for Petastorm readers."""
        return self._snapshot_files(name, version, partition, where)[1]

    def _snapshot_files(self, name: str, version: int | None, partition: str | None,
                        where: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
        """(the table's root as delta-rs resolved it, the snapshot's file URIs under that root)."""
        table = self._table(name, version)
        filters = _partition_filters(spec(name), partition, where)
        # delta-rs reports files under the canonical root (symlinks resolved), which may differ from self.uri()
        root = table.table_uri.removeprefix("file://").rstrip("/")
        return root, sorted(table.file_uris(file_pruning_predicate=filters or None))

    def read(
        self,
        name: str,
        *,
        version: int | None = None,
        partition: str | None = None,
        where: Mapping[str, str] | None = None,
        columns: list[str] | None = None,
    ) -> pa.Table:
        """A snapshot of table ``name`` (latest, or ``version``) as Arrow, in its declared schema.

        Args:
            name: a table declared in ``lake.schemas``.
            version: a Delta version to time-travel to; ``None`` reads the latest.
            partition: read only rows whose partition column equals this value.
            where: read only rows whose partition columns hold these values.
            columns: a subset of columns to read.
        """
        table_spec = spec(name)
        dataset = self._dataset(name, version, partition, where)
        data = table_spec.schema.empty_table() if dataset is None else conform(dataset.to_table(), table_spec)
        return data.select(columns) if columns else data

    def _dataset(self, name: str, version: int | None, partition: str | None,
                 where: Mapping[str, str] | None) -> pads.Dataset | None:
        """The snapshot's Parquet files as one Arrow dataset in the declared schema; None when it has none."""
        table_spec = spec(name)
        root, uris = self._snapshot_files(name, version, partition, where)
        if not uris:
            return None
        fs = pafs.PyFileSystem(_storage_handler(root, self.storage_options))
        relative = _relative(root, uris)
        partitioning = None
        if table_spec.partition_columns:
            partitioning = pads.partitioning(
                pa.schema([(c, pa.string()) for c in table_spec.partition_columns]), flavor="hive")
        return pads.dataset(relative, format="parquet", filesystem=fs, partitioning=partitioning,
                            partition_base_dir="", schema=table_spec.schema)

    def read_batches(self, name: str, *, version: int | None = None, partition: str | None = None,
                     columns: list[str], equal: Mapping[str, Any] | None = None,
                     batch_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
        """Stream a snapshot of table ``name`` as record batches of ``batch_rows`` rows (the last may be
        shorter), decoding each file's pages as they are needed: memory stays near one batch, whatever the
        table's size or its files' row groups.

        Args:
            columns: the columns to read; partition columns cannot be among them.
            equal: keep only rows whose (non-partition) column equals the value, e.g. ``{"split": "test"}``.
        """
        table_spec = spec(name)
        partitioned = sorted(set(columns) & set(table_spec.partition_columns))
        if partitioned:
            raise ValueError(f"read_batches reads file columns only; {partitioned} are partition columns")
        equal = dict(equal or {})
        file_columns = list(dict.fromkeys([*columns, *equal]))
        schema = pa.schema([table_spec.schema.field(c) for c in columns])
        root, uris = self._snapshot_files(name, version, partition)
        fs = pafs.PyFileSystem(_storage_handler(root, self.storage_options))
        pending: list[pa.RecordBatch] = []
        rows = 0
        for uri in uris:
            path = uri[len(root) :].lstrip("/") if uri.startswith(root) else uri
            with fs.open_input_file(path) as handle:
                reader = pq.ParquetFile(handle, pre_buffer=False, buffer_size=1 << 20)
                for batch in reader.iter_batches(batch_size=batch_rows, columns=file_columns):
                    for column, value in equal.items():
                        batch = batch.filter(pc.equal(batch.column(column), value))
                    pending.append(pa.RecordBatch.from_arrays(
                        [batch.column(c).cast(schema.field(c).type) for c in columns], schema=schema))
                    rows += batch.num_rows
                    # A filter leaves scattered rows of each batch read: gather them back into full batches.
                    while rows >= batch_rows:
                        gathered = pa.Table.from_batches(pending, schema=schema).combine_chunks()
                        yield gathered.slice(0, batch_rows).to_batches()[0]
                        rest = gathered.slice(batch_rows)
                        pending, rows = rest.to_batches(), rest.num_rows
        if rows:
            yield pa.Table.from_batches(pending, schema=schema).combine_chunks().to_batches()[0]

    def read_pandas(self, name: str, **kwargs: Any) -> pd.DataFrame:
        """``read`` as pandas (same arguments)."""
        return self.read(name, **kwargs).to_pandas()

    def read_spark(self, name: str, *, version: int | None = None, partition: str | None = None,
                   where: Mapping[str, str] | None = None) -> DataFrame:
        """A snapshot of table ``name`` (latest as of this call, or ``version``) as a Spark DataFrame with the
        declared schema; ``partition`` / ``where`` as in :meth:`read`."""
        if self.spark is None:
            raise ValueError("this Lake was built without a SparkSession; pass spark=get_spark(config)")
        table_spec = spec(name)
        from pyspark.sql import functions as F
        from pyspark.sql.pandas.types import from_arrow_schema

        if self._spark_backend_for(self.spark) == "delta-spark":
            from lake._delta_spark import read_delta_spark

            # Pinned now, as the delta-rs path pins its file list: a DataFrame read before this stage's own
            # commit to the table must not see that commit when Spark evaluates it later.
            df = read_delta_spark(self.spark, self.uri(name), self.version(name) if version is None else version)
        else:
            uris = self.file_uris(name, version=version, partition=partition, where=where)
            spark_schema = from_arrow_schema(table_spec.schema)
            if not uris:
                return self.spark.createDataFrame([], spark_schema)
            df = (
                self.spark.read.schema(spark_schema)
                .option("basePath", self.uri(name))
                .parquet(*[_spark_path(u) for u in uris])
            )
        for column, _, value in _partition_filters(table_spec, partition, where):
            df = df.where(F.col(column) == value)
        return df.select(*table_spec.schema.names)

    # -- metadata ---------------------------------------------------------------------------------
    def version(self, name: str) -> int:
        return self._table(name).version()

    def history(self, name: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """Commits, newest first: version, timestamp, operation and its parameters."""
        return self._table(name).history(limit)

    def row_counts(self, name: str, *, version: int | None = None) -> dict[tuple[str, ...], int]:
        """Rows per partition (keyed by the partition columns' values, outermost first), from the Delta log's
        file statistics: no data file is read unless a writer left a file's count out."""

        table_spec = spec(name)
        table = self._table(name, version)
        actions = pa.table(table.get_add_actions(flatten=True))
        columns = table_spec.partition_columns
        keys = zip(*[actions.column(f"partition.{c}").to_pylist() for c in columns], strict=True) if columns \
            else [()] * actions.num_rows
        counts: dict[tuple[str, ...], int] = {}
        root = table.table_uri.removeprefix("file://").rstrip("/")
        fs = None
        for key, path, rows in zip(keys, actions.column("path").to_pylist(),
                                   actions.column("num_records").to_pylist(), strict=True):
            if rows is None:
                fs = fs or pafs.PyFileSystem(_storage_handler(root, self.storage_options))
                with fs.open_input_file(path) as handle:
                    rows = pq.ParquetFile(handle).metadata.num_rows
            counts[tuple(key)] = counts.get(tuple(key), 0) + int(rows)
        return counts

    def partitions(self, name: str, *, version: int | None = None) -> list[str]:
        """Distinct values of the table's (outermost) partition column in a snapshot, sorted."""
        part_col = spec(name).partition_by
        if part_col is None:
            raise ValueError(f"table '{name}' is not partitioned")
        return sorted({p[part_col] for p in self._table(name, version).partitions()})


def _replaced(table_spec: TableSpec, mode: WriteMode, partition: str | None,
              where: Mapping[str, str] | None) -> dict[str, str] | None:
    """The partition-column values whose rows a write replaces; None when it replaces nothing or everything."""
    name = table_spec.name
    if mode == "replace_partition":
        if table_spec.partition_by is None:
            raise ValueError(f"table '{name}' has no partition column; use mode='overwrite' or 'append'")
        if partition is None:
            raise ValueError(f"replace_partition on '{name}' needs partition=<{table_spec.partition_by}>")
        return {table_spec.partition_by: partition}
    if mode == "replace_where":
        unknown = sorted(set(where or {}) - set(table_spec.partition_columns))
        if not where or unknown:
            raise ValueError(f"replace_where on '{name}' needs where={{column: value}} over its partition columns "
                             f"{table_spec.partition_columns}; got {dict(where or {})}")
        return dict(where)
    return None


def _partition_filters(table_spec: TableSpec, partition: str | None,
                       where: Mapping[str, str] | None) -> list[tuple[str, str, str]]:
    filters = [(table_spec.partition_by, "=", partition)] if partition is not None and table_spec.partition_by else []
    return [*filters, *((column, "=", value) for column, value in (where or {}).items())]


def _quoted(value: str) -> str:
    return value.replace("'", "''")


def _lake_error_from_worker(exc: Exception) -> Exception:
    """Spark wraps errors raised in Python workers; surface ours (e.g. SchemaMismatchError) by type."""
    import re

    from lake import errors

    match = re.search(r"lake\.errors\.(\w+): (.*?)(?: SQLSTATE: \w+)?$", str(exc), flags=re.MULTILINE)
    if match and isinstance(getattr(errors, match.group(1), None), type):
        return getattr(errors, match.group(1))(match.group(2).strip())
    return exc


def _storage_handler(root: str, storage_options: dict[str, str]) -> Any:
    from deltalake.fs import DeltaStorageHandler

    return DeltaStorageHandler(root, storage_options or None)


def _relative(root: str, uris: list[str]) -> list[str]:
    """File URIs as paths under the table ``root`` delta-rs resolved (what a filesystem rooted there opens)."""
    return [u[len(root):].lstrip("/") if u.startswith(root) else u for u in uris]


def _spark_path(uri: str) -> str:
    return uri if "://" in uri else f"file://{uri}"
