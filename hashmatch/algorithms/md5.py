"""md5 of the file bytes: exact matching against lists that carry MD5s."""

from hashmatch.algorithms._exact import register_digest

ALGORITHM = register_digest("md5", 128, "MD5 of the file bytes; exact copies only")
