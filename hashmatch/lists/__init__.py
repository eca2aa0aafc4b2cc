"""Hash lists: reading the files clearinghouses and our own tools produce into entries."""

from hashmatch.lists.exclusions import Exclusions, read_exclusions
from hashmatch.lists.reader import (
    DEFAULT_MAX_INVALID,
    HashListReader,
    ListEntry,
    ListStats,
    parse_fraction,
    read_hash_list,
)
from hashmatch.lists.readers import LIST_FORMATS

__all__ = [
    "DEFAULT_MAX_INVALID",
    "LIST_FORMATS",
    "Exclusions",
    "HashListReader",
    "ListEntry",
    "ListStats",
    "parse_fraction",
    "read_exclusions",
    "read_hash_list",
]
