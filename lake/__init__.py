"""The shared package: configuration, the Spark session, table schemas and the table-IO seam."""

from lake.config import Config, load_config, typed_section
from lake.errors import (
    ConcurrentWriteError,
    ConfigError,
    EmptyInputError,
    InputError,
    ModelNotFoundError,
    SchemaMismatchError,
    SeqrecError,
    TableNotFoundError,
    ValidationError,
)
from lake.tables import Lake, WriteMode

__all__ = [
    "ConcurrentWriteError",
    "Config",
    "ConfigError",
    "EmptyInputError",
    "InputError",
    "Lake",
    "ModelNotFoundError",
    "SchemaMismatchError",
    "SeqrecError",
    "TableNotFoundError",
    "ValidationError",
    "WriteMode",
    "load_config",
    "typed_section",
]
