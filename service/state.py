"""What one server process holds while it serves: the index watch, the hashing pool, the
tokens and the metrics; and the answers every route shares (errors, the pinned matcher).

Made in the app's lifespan (:func:`hashmatch.service.app.create_app`) and reached by routes
through :func:`service_state`. Errors a route raises as :class:`ServiceError` become
``{"message": ...}`` with their status, the shape HMA clients parse.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fastapi import Request

from hashmatch.banks import BankFollower, BankWriter
from hashmatch.index.matcher import Matcher
from hashmatch.service.auth import TokenSet
from hashmatch.service.config import BANK_LOCK_VARIABLE, ServiceConfig
from hashmatch.service.metrics import ServiceMetrics
from hashmatch.service.reloading import IndexWatch
from hashmatch.service.uploads import UploadHasher

__all__ = ["INDEX_NOT_READY", "ServiceError", "ServiceState", "service_state"]

INDEX_NOT_READY = "index not yet ready"
"""HMA's 503 message while no index is loaded."""


class ServiceError(Exception):
    """An answer other than 200: ``status`` and the ``message`` the body carries."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ServiceState:
    config: ServiceConfig
    watch: IndexWatch
    hasher: UploadHasher
    tokens: TokenSet
    metrics: ServiceMetrics
    banks: BankFollower
    bank_writer: BankWriter | None = None

    @classmethod
    def start(cls, config: ServiceConfig, metrics: ServiceMetrics) -> ServiceState:
        tokens = TokenSet(config.token_file)
        banks = BankFollower(config.bank_directory, poll_interval=config.bank_poll_interval)
        writer = None
        if config.bank_writer:
            # under a supervisor that holds the directory's lock, or (in-process) taking it
            supervised = os.environ.get(BANK_LOCK_VARIABLE) == str(os.getppid())
            writer = banks.writer(shared_lock=supervised)
        watch = IndexWatch(config, on_update=metrics.observe_index, banks=banks)
        hasher = UploadHasher(config.hash_workers, config.time_limit, config.max_waiting)
        watch.start()
        banks.start()
        return cls(config, watch, hasher, tokens, metrics, banks, writer)

    def stop(self) -> None:
        self.watch.stop()
        self.banks.close()
        if self.bank_writer is not None:
            self.bank_writer.close()
        self.hasher.close()

    def writer(self) -> BankWriter:
        """The bank writer; 403 on an instance that only reads the banks."""
        if self.bank_writer is None:
            raise ServiceError(
                403,
                "this instance only reads the banks; send changes to the instance started"
                " with --bank-writer",
            )
        return self.bank_writer

    def reload(self) -> None:
        """What ``SIGHUP`` does: check the index now, re-read the token file."""
        self.tokens.reload()
        self.watch.request_check()

    def matcher(self) -> Matcher:
        """The served version, pinned for one request; 503 while none is loaded."""
        matcher = self.watch.matcher
        if matcher is None:
            raise ServiceError(503, INDEX_NOT_READY)
        return matcher.pinned()


def service_state(request: Request) -> ServiceState:
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise ServiceError(503, "the service is starting")
    return state
