"""The few exceptions seqrec raises on purpose. Each message says what happened and what to do next."""

from __future__ import annotations

__all__ = [
    "ArtifactIntegrityError",
    "ConcurrentWriteError",
    "ConfigError",
    "EmptyInputError",
    "InputError",
    "ModelNotFoundError",
    "RegistryError",
    "SchemaMismatchError",
    "SeqrecError",
    "TableNotFoundError",
    "ValidationError",
]


class SeqrecError(Exception):
    """Base class: an expected failure with a message meant for the person running the job."""


class ConfigError(SeqrecError):
    """A configuration value is missing, unknown or has the wrong type."""


class TableNotFoundError(SeqrecError):
    """A named table does not exist yet; usually an upstream stage has not run for this lake root."""


class SchemaMismatchError(SeqrecError):
    """Data does not match a table's declared schema; nothing was written."""


class InputError(SeqrecError):
    """A raw input file cannot be read as declared (missing, corrupt, wrong encoding, changed columns)."""


class EmptyInputError(SeqrecError):
    """A stage found nothing to process for its ds; nothing was written."""


class ConcurrentWriteError(SeqrecError):
    """Another writer committed to the same table first. Retryable: rerun the task."""

    retryable = True


class ModelNotFoundError(SeqrecError):
    """No registered model matches the request (alias, version or vocabulary)."""


class ArtifactIntegrityError(SeqrecError):
    """A model file does not match what was registered, or holds content that could run code; nothing of it
    was loaded."""


class RegistryError(SeqrecError):
    """The model registry could not answer (database locked, server down). Retryable; nothing was changed on
    the strength of the missing answer."""

    retryable = True


class ValidationError(SeqrecError):
    """Output failed a publish check; the previous published version is left in place."""
