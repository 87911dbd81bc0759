"""When is a raw-events drop complete? Stdlib only: the DAG's sensor calls it with a pathlib.Path or an
Airflow ObjectStoragePath, and the unit tests call it without Airflow.

A drop is either one file (producers move a finished file into place, so existing means complete) or a
folder that a producer fills file by file and then marks complete by writing a marker file into it, Hadoop's
`_SUCCESS` by default (SEQREC_DROP_MARKER; an empty value accepts a folder as soon as it holds a data
file, for producers that move whole folders into place). Without the marker a half-copied folder would be
ingested, and the day's `events` built from part of its rows.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT_MARKER = "_SUCCESS"


class PathLike(Protocol):  # what pathlib.Path and airflow.sdk.ObjectStoragePath both offer
    name: str

    def is_file(self) -> bool: ...
    def is_dir(self) -> bool: ...
    def rglob(self, pattern: str): ...
    def __truediv__(self, other: str) -> PathLike: ...


def _has_data_file(folder: PathLike) -> bool:
    # The ingest reader skips names starting with "." or "_" at any depth (markers, Spark's _temporary).
    prefix = len(str(folder).rstrip("/")) + 1
    return any(path.is_file() and not any(part.startswith((".", "_")) for part in str(path)[prefix:].split("/"))
               for path in folder.rglob("*"))


def drop_status(path: PathLike, marker: str = DEFAULT_MARKER) -> tuple[bool, str]:
    """(complete?, why) for the drop at ``path``."""
    if path.is_file():
        return True, "the source file exists"
    if not path.is_dir():
        return False, "nothing there yet"
    has_data = _has_data_file(path)
    if marker:
        if not (path / marker).is_file():
            return False, (f"the folder has no {marker} marker yet (a producer writes it when the drop is "
                           f"complete; SEQREC_DROP_MARKER= accepts a folder without one)")
        if not has_data:
            return False, f"the folder has a {marker} marker but no data file"
        return True, f"the folder is marked complete by {marker}"
    if not has_data:
        return False, "the folder holds no data file yet"
    return True, "the folder holds a data file (no marker required: SEQREC_DROP_MARKER is empty)"
