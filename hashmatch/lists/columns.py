"""The names lists use for their columns and algorithms, mapped onto ours.

Hash lists come from many exporters (ThreatExchange, HMA, clearinghouse CSVs, our own
``hashmatch hash``), each spelling the same fields differently. One table each keeps the
aliases in one place.
"""

from __future__ import annotations

from functools import lru_cache

__all__ = [
    "ALGORITHM_ALIASES",
    "COLUMN_ALIASES",
    "UNSUPPORTED_SIGNALS",
    "canonical_algorithm",
    "canonical_column",
]

COLUMN_ALIASES: dict[str, str] = {
    "hash": "hash",
    "signal": "hash",
    "signal_str": "hash",
    "signal_value": "hash",
    "indicator": "hash",
    "hash_value": "hash",
    "algorithm": "algorithm",
    "signal_type": "algorithm",
    "hash_type": "algorithm",
    "indicator_type": "algorithm",
    "id": "id",
    "entry_id": "id",
    "external_id": "id",
    "content_id": "id",
    "label": "label",
    "labels": "label",
    "tags": "label",
    "category": "label",
    "list": "list",
    "list_name": "list",
    "bank": "list",
}
"""Lower-case column name -> the field it carries."""

ALGORITHM_ALIASES: dict[str, str] = {
    "hash_pdq": "pdq",
    "photo_pdq": "pdq",
    "pdq_hash": "pdq",
    "photo_md5": "md5",
    "hash_md5": "md5",
    "md5_hash": "md5",
    "photo_sha256": "sha256",
    "hash_sha256": "sha256",
    "sha-256": "sha256",
    "sha256_hash": "sha256",
    "average_hash": "ahash",
    "perceptual_hash": "phash",
}
"""Other exporters' names for our algorithms (ThreatExchange indicator and signal types)."""

UNSUPPORTED_SIGNALS: dict[str, str] = {
    "video_md5": "video signals are not matched by an image index",
    "vpdq": "video signals are not matched by an image index",
    "hash_tmk": "video signals are not matched by an image index",
    "video_tmk_pdqf": "video signals are not matched by an image index",
    "photodna": "PhotoDNA is proprietary and not supported",
    "hash_photodna": "PhotoDNA is proprietary and not supported",
}


@lru_cache(maxsize=1024)
def canonical_column(name: str) -> str | None:
    """Our field for a column header, or None for a column kept as metadata."""
    return COLUMN_ALIASES.get(name.strip().lower().lstrip("\ufeff"))


@lru_cache(maxsize=1024)
def canonical_algorithm(name: str) -> str:
    """Our algorithm name for an exporter's (unknown names come back lower-cased, unchanged)."""
    key = name.strip().lower()
    return ALGORITHM_ALIASES.get(key, key)
