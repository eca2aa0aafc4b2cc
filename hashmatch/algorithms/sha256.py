"""sha256 of the file bytes: exact matching against lists that carry SHA-256s."""

from hashmatch.algorithms._exact import register_digest

ALGORITHM = register_digest("sha256", 256, "SHA-256 of the file bytes; exact copies only")
