"""The index subsystem (``hashmatch.index``): build, publish, load, verify and search.

An index is a directory holding published, immutable versions; each version has a manifest,
the hash codes of every algorithm in binary, the exact-search tables, and the list entries in
SQLite. See :mod:`hashmatch.index.artifact` for the layout.
"""
