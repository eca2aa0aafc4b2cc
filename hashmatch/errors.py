"""The exception hierarchy: one root, one subclass per kind of failure.

Callers catch :class:`HashmatchError` to survive anything this library can raise for bad input,
and the subclasses to react to a specific cause. Every message names the input it is about.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "BankError",
    "BankLockedError",
    "ClusterError",
    "EvaluationError",
    "HashFormatError",
    "HashListError",
    "HashmatchError",
    "IndexBuildError",
    "IndexFormatError",
    "IndexIntegrityError",
    "IndexVersionError",
    "ImageDecodeError",
    "ImageError",
    "ImageReadError",
    "ImageTimeoutError",
    "ImageTooLargeError",
    "OptionError",
    "ServiceCallError",
    "ServiceUnavailableError",
    "UnknownAlgorithmError",
    "UnsupportedImageError",
    "WorkerError",
]


class HashmatchError(Exception):
    """Root of every error hashmatch raises on purpose."""


class ImageError(HashmatchError):
    """An image could not be turned into pixels; ``source`` names the input."""

    kind = "image"
    """A short, stable label for reports: ``read``, ``decode``, ``too_large``, ``unsupported``,
    ``timeout``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[type[ImageError], tuple[str, str]]:
        return type(self), (self.source, self.reason)  # so it crosses process boundaries


class ImageReadError(ImageError):
    """The input could not be read at all (missing file, no permission, a directory...)."""

    kind = "read"


class ImageDecodeError(ImageError):
    """The bytes claim to be an image but do not decode: truncated, corrupt, garbage."""

    kind = "decode"


class ImageTooLargeError(ImageError):
    """The input exceeds a configured limit (bytes or pixels); refused before decoding."""

    kind = "too_large"


class UnsupportedImageError(ImageError):
    """The input is not an image format we can decode (text, PDF, SVG, unknown bytes...)."""

    kind = "unsupported"


class ImageTimeoutError(ImageError):
    """Hashing the input took longer than the configured time limit and was abandoned."""

    kind = "timeout"


class UnknownAlgorithmError(HashmatchError, ValueError):
    """An algorithm name that is not registered."""


class HashFormatError(HashmatchError, ValueError):
    """A hash value that does not parse: wrong length, non-hex characters."""


class OptionError(HashmatchError, ValueError):
    """An option given to a call is of the wrong type or out of range (a threshold, a limit,
    a time limit, a list format...); the message names the option and what it accepts."""


class HashListError(HashmatchError):
    """A hash list that cannot be used; names the file and, where it applies, the line."""

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason

    def __reduce__(self) -> tuple[type[HashListError], tuple[str, int | None, str]]:
        return type(self), (self.source, self.line, self.reason)


class IndexFormatError(HashmatchError):
    """A path that is not a hashmatch index, or one in a format this version cannot read."""


class IndexIntegrityError(HashmatchError):
    """An index whose files do not match their recorded checksums or structure."""


class IndexBuildError(HashmatchError):
    """A build that was refused (bad configuration, empty result, another build running)."""


class IndexVersionError(HashmatchError):
    """A machine of a cluster scan does not hold the index version the scan started on (or
    holds a different copy under its name): refused, so one scan never mixes versions."""


class BankError(HashmatchError):
    """A bank call that was refused: an unknown bank or content id, a bad name or hash, a
    bank that exists already. ``status`` is the HTTP status the service answers it with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class BankLockedError(BankError):
    """Another process writes this bank directory: one writer at a time, any readers."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


class EvaluationError(HashmatchError):
    """An evaluation that cannot run: no known image could be hashed, or an algorithm it
    cannot measure."""


class WorkerError(HashmatchError):
    """A batch's worker processes keep dying (or cannot start), so the batch was stopped.

    One file that crashes its worker is not this: it becomes that file's ``crashed`` error
    record. This is raised when workers die again and again without finishing any file."""


class ClusterError(HashmatchError):
    """A cluster scan that cannot run: Ray is not installed, the cluster cannot be reached,
    or the scan failed there (the message says what the cluster reported)."""


class ServiceCallError(HashmatchError):
    """A call to a ``hashmatch serve`` that failed: no answer (``status`` None: refused,
    timed out, cut off) or an answer other than the one asked for (``status`` its HTTP
    status). ``url`` is the method and URL called, ``message`` the server's own message;
    neither ever holds the token or a hash."""

    def __init__(self, url: str, status: int | None, message: str) -> None:
        where = url if status is None else f"{url}: HTTP {status}"
        super().__init__(f"{where}: {message}")
        self.url = url
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[type[ServiceCallError], tuple[str, int | None, str]]:
        return type(self), (self.url, self.status, self.message)


class AuthenticationError(ServiceCallError):
    """401: the call carried no token, or one the server does not know."""


class ServiceUnavailableError(ServiceCallError):
    """503: the server has no index loaded yet, or every hashing process is busy; worth
    trying again shortly (the client's ``retries`` do)."""
