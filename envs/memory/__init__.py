"""Memory mapping: which buffers live in fast memory (``schedgym/MemoryMapping-v0``) and at which offsets
(``schedgym/MemoryOffsets-v0``). Importing this package never imports torch."""

from schedgym.envs.memory.io import InstanceFormatError, load_minimalloc, load_offsets_csv, load_program
from schedgym.envs.memory.types import (
    MemoryProgram,
    MemorySpec,
    OffsetAssignment,
    OffsetInstance,
    TierMapping,
)
from schedgym.envs.memory.validator import MappingError, validate_mapping, validate_offsets

__all__ = [
    "InstanceFormatError",
    "MappingError",
    "MemoryProgram",
    "MemorySpec",
    "OffsetAssignment",
    "OffsetInstance",
    "TierMapping",
    "load_minimalloc",
    "load_offsets_csv",
    "load_program",
    "validate_mapping",
    "validate_offsets",
]
