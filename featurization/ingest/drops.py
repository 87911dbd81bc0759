"""A raw drop (a file or a folder, local or on an object store) read once, without a JVM: its identity, its
content fingerprint, each file's format and header, and its lines that are not UTF-8.

Every source goes through :func:`open_drop`, whatever its scheme, so a ``file://`` or ``s3://`` folder gets
exactly the checks a local path gets:

- the files: every file under the folder whose name (and folders) do not start with ``.`` or ``_``
  (``_SUCCESS``, ``.crc``); none is an ``EmptyInputError``;
- the format of each file by its magic bytes (Parquet starts with ``PAR1``; anything else is text); a
  ``.parquet`` name without them is a corrupt Parquet file; a drop mixing both is refused;
- generic CSV: each file's header, matched to ``ingest.columns`` by name (so files may order their
  columns differently); Parquet: each file's schema by name and type;
- UTF-8, line by line: lines that do not decode are reported with their line number and bytes (escaped);
  the stage quarantines them one by one instead of refusing the file.

The fingerprint is a sha256 over every file's relative name, size and content, so the same bytes delivered
again are recognisably the same drop. The drop's identity (``drop_id``) is its path: a redelivery to the
same path replaces what that drop delivered before.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote

from featurization.ingest.settings import IngestSettings
from lake.errors import EmptyInputError, InputError

__all__ = ["Drop", "InvalidLine", "SourceFile", "drop_id", "open_drop"]

HIDDEN = (".", "_")
PARQUET_MAGIC = b"PAR1"
CHUNK = 8 << 20
# Invalid lines kept per file with their bytes; beyond this they are only counted (the quarantine guard
# refuses such a drop anyway unless overridden, and then the rows of the rest carry no raw bytes).
KEPT_INVALID_LINES = 10_000


@dataclass(frozen=True)
class InvalidLine:
    line: int  # 1-based, counting the header line of a CSV with one
    raw: str  # the line's bytes, undecodable ones escaped as \xNN


@dataclass(frozen=True)
class SourceFile:
    uri: str  # as Spark names it (input_file_name, percent-encoded): file:///... or scheme://bucket/key
    read_path: str  # as Spark is given it (not encoded)
    name: str  # as messages name it: the plain path of a local file, else the URI
    size: int
    kind: Literal["csv", "parquet"]
    sha256: str
    header: tuple[str, ...] | None = None  # generic CSV
    parquet_schema: Any = None  # pyarrow.Schema, for Parquet
    invalid_lines: tuple[InvalidLine, ...] = ()
    invalid_count: int = 0  # all of them, kept or not


@dataclass(frozen=True)
class Drop:
    path: str  # the source as one canonical URI
    drop_id: str
    fingerprint: str
    files: tuple[SourceFile, ...] = field(default_factory=tuple)

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def kind(self) -> Literal["csv", "parquet"]:
        return self.files[0].kind

    @property
    def read_paths(self) -> list[str]:
        return [f.read_path for f in self.files]

    @property
    def invalid_count(self) -> int:
        return sum(f.invalid_count for f in self.files)


def drop_id(path: str) -> str:
    """A drop's identity: a short hash of its canonical path (a partition value in the lake's tables)."""
    return hashlib.sha256(path.encode()).hexdigest()[:16]


def _canonical(source: str) -> str:
    """One name per location: ``file:///absolute/path`` (symlinks resolved, not percent-encoded) or the URI."""
    if source.startswith("file://"):
        source = source.removeprefix("file://")
    if "://" in source:
        return source.rstrip("/")
    return f"file://{Path(unquote(source)).resolve()}"


def open_drop(source: str, settings: IngestSettings, storage_options: dict[str, Any] | None = None) -> Drop:
    """List, fingerprint and check the drop at ``source`` (a path or URI, a file or a folder).

    Raises:
        InputError: the source is missing, a file is corrupt or has columns other than ``ingest.columns``
            asks for, or the drop mixes formats.
        EmptyInputError: the source holds no data file.
    """
    from lake.storage import fsspec_filesystem

    path = _canonical(source)
    fs, root = fsspec_filesystem(path, storage_options or {})
    if not fs.exists(root):
        raise InputError(f"source {source} does not exist")
    scheme = path.split("://", 1)[0]
    names = [root] if fs.isfile(root) else sorted(
        name for name in fs.find(root) if not _hidden(name[len(root.rstrip("/")) + 1 :]))
    if not names:
        raise EmptyInputError(f"source {source} holds no files")
    files = tuple(_scan(fs, name, scheme, settings) for name in names)
    kinds = {f.kind for f in files}
    if len(kinds) > 1:
        raise InputError(f"source {source} mixes Parquet and text files; deliver one format per drop")
    if settings.format == "taobao" and kinds == {"parquet"}:
        raise InputError(f"{source}: the taobao format is headerless CSV; use ingest.format=generic for Parquet")
    if settings.format == "generic":
        _check_generic(files, settings)
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.read_path[len(path):]}\0{file.size}\0{file.sha256}\n".encode())
    return Drop(path=path, drop_id=drop_id(path), fingerprint=digest.hexdigest(), files=files)


def _hidden(relative: str) -> bool:
    return any(part.startswith(HIDDEN) for part in relative.split("/") if part)


def _scan(fs: Any, name: str, scheme: str, settings: IngestSettings) -> SourceFile:
    location = (name, f"{scheme}://{quote(name)}", f"{scheme}://{name}", name if scheme == "file" else
                f"{scheme}://{name}")
    with fs.open(name, "rb") as handle:
        head = handle.read(4)
    size = fs.size(name)
    if head == PARQUET_MAGIC or name.lower().endswith(".parquet"):
        return _scan_parquet(fs, location, size)  # a .parquet name without the magic bytes fails there, by name
    return _scan_text(fs, location, size, settings)


def _scan_parquet(fs: Any, location: tuple[str, str, str, str], size: int) -> SourceFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    name, uri, read_path, shown = location
    with fs.open(name, "rb") as handle:
        content = handle.read()
    try:
        schema = pq.read_schema(io.BytesIO(content))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(
            f"{shown}: not a readable Parquet file ({exc}); re-export it or move it out of the source"
        ) from None
    return SourceFile(uri, read_path, shown, size, "parquet", hashlib.sha256(content).hexdigest(),
                      parquet_schema=schema)


def _scan_text(fs: Any, location: tuple[str, str, str, str], size: int, settings: IngestSettings) -> SourceFile:
    """One streaming pass: sha256 and UTF-8 validity (the common, valid case never splits lines); a second,
    line by line, only for a file that has invalid bytes."""
    name, uri, read_path, shown = location
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    valid = True
    with fs.open(name, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            if valid:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    valid = False
    if valid:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            valid = False
    invalid: list[InvalidLine] = []
    count = 0
    if not valid:
        with fs.open(name, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    count += 1
                    if len(invalid) < KEPT_INVALID_LINES:
                        invalid.append(InvalidLine(number, line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")))
    header = None
    if settings.format == "generic":
        header = _header(fs, name, shown, invalid)
    return SourceFile(uri, read_path, shown, size, "csv", digest.hexdigest(), header=header,
                      invalid_lines=tuple(invalid), invalid_count=count)


def _header(fs: Any, name: str, shown: str, invalid: list[InvalidLine]) -> tuple[str, ...] | None:
    """A generic CSV's header; None for an empty file."""
    if invalid and invalid[0].line == 1:
        raise InputError(f"{shown}: the header line is not valid UTF-8 ({invalid[0].raw!r}); re-export the file "
                         f"as UTF-8; nothing was written")
    with fs.open(name, "rb") as handle:
        first = handle.readline().decode("utf-8-sig")
    row = next(csv.reader([first]), [])
    return tuple(column.strip() for column in row) if row else None


def _check_generic(files: tuple[SourceFile, ...], settings: IngestSettings) -> None:
    """Every file's columns match ingest.columns by name; Parquet columns have types that can hold them, and
    the same types in every file (Spark reads a folder of Parquet with one schema)."""
    wanted = settings.raw_columns
    first_types: tuple[str, dict[str, Any]] | None = None
    for file in files:
        if file.kind == "parquet":
            columns = list(file.parquet_schema.names)
            types = {f.name: f.type for f in file.parquet_schema}
        else:
            if file.header is None:
                continue
            columns, types = list(file.header), {}
        _check_columns(file.name, columns, wanted)
        for canonical, raw in settings.columns.items():
            expected = raw in types and _parquet_type_expected(canonical, types[raw], settings.time_unit)
            if expected:
                raise InputError(
                    f"{file.name}: column '{raw}' ({canonical}) is {types[raw]}, expected {expected}; the source "
                    f"changed type. Fix the export (or ingest.time_unit for event_time); nothing was written."
                )
        if not types:
            continue
        if first_types is None:
            first_types = (file.name, types)
            continue
        changed = {c: f"{first_types[1][c]} -> {t}" for c, t in types.items() if first_types[1].get(c) != t}
        if changed:
            raise InputError(f"{file.name}: column types differ from {first_types[0]}'s: {changed}; re-export the "
                             f"files alike; nothing was written.")


def _check_columns(where: str, columns: list[str], wanted: list[str]) -> None:
    missing = [raw for raw in wanted if raw not in columns]
    extra = [c for c in columns if c not in wanted]
    if missing:
        new = f" and {extra} are new (renamed?)" if extra else ""
        raise InputError(
            f"{where}: column(s) {missing} named in ingest.columns are missing{new}; the file has {columns}. "
            f"If the source renamed a column, update ingest.columns; nothing was written."
        )
    if extra:
        raise InputError(
            f"{where}: unexpected column(s) {extra} beside {wanted}; the source changed shape. "
            f"Map or drop them on purpose (ingest.columns); nothing was written."
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InputError(f"{where}: column(s) {repeated} appear more than once in the header; nothing was written.")


def _parquet_type_expected(field: str, type_: Any, time_unit: str) -> str | None:
    """What ``field`` should be when its Parquet type ``type_`` cannot hold it, else None."""
    import pyarrow.types as pat

    if pat.is_dictionary(type_):
        type_ = type_.value_type
    text = pat.is_string(type_) or pat.is_large_string(type_)
    if field == "behaviour":
        expected, ok = "string", text
    elif field == "event_time" and time_unit == "iso8601":
        expected, ok = "timestamp or string (ingest.time_unit=iso8601)", text or pat.is_timestamp(type_)
    elif field == "event_time":
        expected = f"integer, float or string (ingest.time_unit={time_unit})"
        ok = text or pat.is_integer(type_) or pat.is_floating(type_)
    else:
        expected, ok = "integer or string", text or pat.is_integer(type_)
    return None if ok else expected
