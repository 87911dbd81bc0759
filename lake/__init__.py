"""The shared package: configuration, the Spark session, table schemas and the table-IO seam."""

from lake.config import Config, load_config, typed_section
from lake.errors import (
    ArtifactIntegrityError,
    ConcurrentWriteError,
    ConfigError,
    EmptyInputError,
    InputError,
    ModelNotFoundError,
    RegistryError,
    SchemaMismatchError,
    SeqrecError,
    TableNotFoundError,
    ValidationError,
)
from lake.tables import Lake, WriteMode

__all__ = [
    "ArtifactIntegrityError",
    "ConcurrentWriteError",
    "Config",
    "ConfigError",
    "EmptyInputError",
    "InputError",
    "Lake",
    "ModelNotFoundError",
    "RegistryError",
    "SchemaMismatchError",
    "SeqrecError",
    "TableNotFoundError",
    "ValidationError",
    "WriteMode",
    "load_config",
    "typed_section",
]
