"""``ServiceConfig``: every setting of ``hashmatch serve``, declared once.

Each field is a command-line flag (``--max-upload-bytes``) and an environment variable
(``HASHMATCH_MAX_UPLOAD_BYTES``); :data:`SETTINGS` documents them, and README's table is
checked against it. Values are checked when the config is made, so a bad one stops the server
before it binds a port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from pathlib import Path

from hashmatch.errors import OptionError
from hashmatch.index.artifact import BANKS
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits
from hashmatch.parallel import default_workers

__all__ = [
    "BANK_LOCK_VARIABLE",
    "DEFAULT_PORT",
    "MULTIPROCESS_VARIABLE",
    "SETTINGS",
    "ServiceConfig",
    "environment_variable",
    "exposure_problem",
    "is_loopback",
]

_LOG_LEVELS = ("debug", "info", "warning", "error")

MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus-client's multiprocess directory, which the supervisor sets for its servers."""

BANK_LOCK_VARIABLE = "HASHMATCH_BANK_LOCK_HOLDER"
"""Set by a ``--bank-writer`` supervisor to its pid: its server processes write the banks
under the lock it holds."""

DEFAULT_PORT = 5100
"""HMA's port, so a client's base URL changes only in its host."""


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """How one ``hashmatch serve`` runs; the defaults suit one machine behind a proxy."""

    index: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 0
    """Server processes (0: one per core)."""
    hash_workers: int = 1
    """Hashing processes per server process."""
    token_file: Path | None = None
    insecure_no_auth: bool = False
    public_metrics: bool = False
    reload_interval: float = 10.0
    stale_after: float = 65.0
    max_upload_bytes: int = 32 * 1024 * 1024
    max_pixels: int = DEFAULT_LIMITS.max_pixels
    max_side: int = DEFAULT_LIMITS.max_side
    time_limit: float = 10.0
    body_timeout: float = 30.0
    shutdown_timeout: float = 30.0
    max_batch: int = 32
    max_queries: int = 10_000
    max_waiting: int = 64
    fetch_hosts: tuple[str, ...] = ()
    fetch_private: bool = False
    fetch_timeout: float = 10.0
    verify: bool = True
    log_level: str = "info"
    banks: Path | None = None
    """The bank directory (None: ``<index>/banks``)."""
    bank_writer: bool = False
    bank_poll_interval: float = 1.0
    rebuild_config: Path | None = None
    rebuild_every: float = 0.0
    rebuild_after: int = 0

    def __post_init__(self) -> None:
        for name in ("port",):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise OptionError(f"{name} must be 0-65535, got {value}")
        whole = ("workers", "hash_workers", "max_upload_bytes", "max_pixels", "max_side")
        for name in (*whole, "max_batch", "max_queries", "max_waiting"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionError(f"{name} must be a whole number >= 0, got {value!r}")
        for name in ("hash_workers", "max_upload_bytes", "max_batch", "max_queries"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be at least 1, got {getattr(self, name)}")
        seconds = ("reload_interval", "stale_after", "time_limit", "body_timeout")
        for name in (*seconds, "shutdown_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise OptionError(f"{name} must be seconds > 0, got {value!r}")
        if not isinstance(self.bank_poll_interval, (int, float)) or not self.bank_poll_interval > 0:
            raise OptionError(
                f"bank_poll_interval must be seconds > 0, got {self.bank_poll_interval!r}"
            )
        if not isinstance(self.rebuild_every, (int, float)) or self.rebuild_every < 0:
            raise OptionError(f"rebuild_every must be seconds >= 0, got {self.rebuild_every!r}")
        if isinstance(self.rebuild_after, bool) or not isinstance(self.rebuild_after, int):
            raise OptionError(f"rebuild_after must be a whole number, got {self.rebuild_after!r}")
        if self.rebuild_after < 0:
            raise OptionError(f"rebuild_after must be >= 0, got {self.rebuild_after}")
        if self.rebuilds and not (self.bank_writer and self.rebuild_config is not None):
            raise OptionError(
                "--rebuild-every/--rebuild-after need --bank-writer (the writing instance"
                " rebuilds) and --rebuild-config (the lists.toml to build from)"
            )
        if not self.fetch_timeout > 0:
            raise OptionError(f"fetch_timeout must be seconds > 0, got {self.fetch_timeout!r}")
        if self.stale_after <= self.reload_interval:
            raise OptionError(
                f"stale_after ({self.stale_after:g} s) must be longer than reload_interval"
                f" ({self.reload_interval:g} s), or the index would always look stale"
            )
        if self.log_level not in _LOG_LEVELS:
            raise OptionError(
                f"log_level must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}"
            )
        _ = self.limits  # ImageLimits checks its values: here, not at the first upload

    @property
    def server_processes(self) -> int:
        return self.workers or default_workers()

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(
            max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels, max_side=self.max_side
        )

    @property
    def bank_directory(self) -> Path:
        return self.banks if self.banks is not None else self.index / BANKS

    @property
    def rebuilds(self) -> bool:
        """Whether this instance folds its banks into new versions itself."""
        return bool(self.rebuild_every or self.rebuild_after)

    @property
    def authenticated(self) -> bool:
        return self.token_file is not None


SETTINGS: dict[str, str] = {
    "index": "the index directory to serve (its published version, followed as it changes)",
    "host": "address to listen on; without a token file only a loopback address is allowed",
    "port": "port to listen on (HMA's 5100 by default)",
    "workers": "server processes (0: one per core); each loads the index memory-mapped",
    "hash_workers": "processes per server process that decode and hash uploads",
    "token_file": "bearer tokens, one per line (`NAME TOKEN` or `TOKEN`); re-read on SIGHUP",
    "insecure_no_auth": "allow serving without tokens on a non-loopback address",
    "public_metrics": "serve /metrics without a token",
    "reload_interval": "seconds between checks for a newly published version (also on SIGHUP)",
    "stale_after": "seconds without a successful check after which /status says INDEX-STALE",
    "max_upload_bytes": "largest request body; larger ones get 413 before they are read",
    "max_pixels": "largest image accepted, in pixels (checked from the header)",
    "max_side": "longest image side accepted, in pixels",
    "time_limit": "seconds one upload may take to decode and hash",
    "body_timeout": "seconds a request body may stall before the request is dropped (408)",
    "shutdown_timeout": "seconds requests in flight get to finish after SIGTERM",
    "max_batch": "images per /v1/match/batch request",
    "max_queries": "queries per /v1/lookup request",
    "max_waiting": "uploads waiting for a hashing process before new ones get 503",
    "fetch_hosts": "hosts the `?url=` routes may fetch from (comma-separated; `*.example.com`"
    " allowed); empty: fetching is off",
    "fetch_private": "let `?url=` fetch loopback, private and link-local addresses",
    "fetch_timeout": "seconds a `?url=` fetch may take",
    "verify": "check every index file's checksum when loading a version",
    "log_level": "debug, info, warning or error; request lines are JSON at info",
    "banks": "the bank directory to follow (default: INDEX/banks); added contents match at once",
    "bank_writer": "this instance writes the banks (curation routes accept changes);"
    " one writer per bank directory, any number of readers",
    "bank_poll_interval": "seconds between reads of the bank logs when nothing announced a"
    " change (writers on this machine are seen at the next lookup)",
    "rebuild_config": "the lists.toml (with a [banks] section) the writer rebuilds from",
    "rebuild_every": "fold the banks into a new version at most every S seconds while records"
    " wait (0: never; an external `index build --config` can do it instead)",
    "rebuild_after": "fold the banks into a new version once N records wait (0: never)",
}


def environment_variable(field_name: str) -> str:
    """The variable that sets ``field_name`` when its flag is not given."""
    return "HASHMATCH_" + field_name.upper()


def exposure_problem(config: ServiceConfig) -> tuple[str, bool] | None:
    """Why serving ``config`` without tokens needs a word: (message, refused) or None.

    Without a token file the service answers anyone who can reach it; that is allowed only on
    a loopback address (a sidecar, a test) unless ``--insecure-no-auth`` says it is meant."""
    if config.authenticated:
        return None
    if is_loopback(config.host):
        return (
            f"serving without authentication on {config.host} (loopback only);"
            " give --token-file to require bearer tokens",
            False,
        )
    if config.insecure_no_auth:
        return (f"serving WITHOUT authentication on {config.host} (--insecure-no-auth)", False)
    return (
        f"refusing to serve on {config.host} without authentication: give --token-file FILE"
        " (bearer tokens), listen on 127.0.0.1, or pass --insecure-no-auth",
        True,
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) only accepts connections from here."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


assert set(SETTINGS) == {f.name for f in fields(ServiceConfig)}, "document every setting"
