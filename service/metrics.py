"""The service's Prometheus metrics, and ``/metrics``.

With several server processes (``--workers``), each writes its metrics to files in a shared
directory (prometheus-client's multiprocess mode, set up by the supervisor through
``PROMETHEUS_MULTIPROC_DIR``) and ``/metrics``, whichever process answers it, adds them up.
Labels are bounded: routes are path templates, lists and algorithms come from the index,
banks from the bank directory, error kinds from a fixed set. Which alert each metric serves
is in README ("Metrics").
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from hashmatch.banks import BankFollower
from hashmatch.index.loaded import LoadedIndex
from hashmatch.index.matcher import Matcher
from hashmatch.index.results import MatchResult
from hashmatch.service.config import MULTIPROCESS_VARIABLE
from hashmatch.service.reloading import IndexWatch

__all__ = ["ServiceMetrics", "bank_stats", "served_snapshot"]

disable_created_metrics()  # the *_created series double the output and serve no alert

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def served_snapshot(matcher: Matcher | None) -> LoadedIndex | None:
    """The version ``matcher`` serves (None: nothing loaded yet), for the banks' numbers,
    which are told against it. :class:`Matcher` keeps it private; this is the one place the
    service reads it."""
    return None if matcher is None else matcher._snapshot


def bank_stats(follower: BankFollower, snapshot: LoadedIndex | None) -> dict[str, Any]:
    """:meth:`BankFollower.stats` under the directory's lock: the states and the overlay
    change in the follower's thread, and the stats walk them (for the metrics, ``/v1/banks``
    and ``/v1/index``). The served version's overlay is made first if no lookup has made it
    yet (a process's first version): until then the stats would count an empty one."""
    if snapshot is not None:
        follower.view_for(snapshot)
    with follower.directory.locked():
        return follower.stats(snapshot)


class ServiceMetrics:
    """Every metric of one server process, on a registry of its own."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "hashmatch_requests",
            "Requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "hashmatch_request_duration_seconds",
            "Time from a request's arrival to its answer, by route, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "hashmatch_requests_in_flight",
            "Requests being answered now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.matches = Counter(
            "hashmatch_matches",
            "Matches reported, by list and algorithm (counts only, never hashes).",
            ["list", "algorithm"],
            registry=registry,
        )
        self.upload_errors = Counter(
            "hashmatch_upload_errors",
            "Uploads that could not be matched, by error kind (decode, too_large, timeout...).",
            ["kind"],
            registry=registry,
        )
        self.index_info = Gauge(
            "hashmatch_index_info",
            "1 for the index version a server process serves.",
            ["version"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.index_loaded = Gauge(
            "hashmatch_index_loaded",
            "1 when every server process has an index loaded.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.index_entries = Gauge(
            "hashmatch_index_entries",
            "List entries in the served version, by algorithm.",
            ["algorithm"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.load_seconds = Gauge(
            "hashmatch_index_load_seconds",
            "How long loading the served version took.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "hashmatch_index_reloads",
            "New versions loaded (the first load included).",
            registry=registry,
        )
        self.reload_failures = Counter(
            "hashmatch_index_reload_failures",
            "Index checks that failed (the previous version kept serving).",
            registry=registry,
        )
        self.check_age = Gauge(
            "hashmatch_index_check_age_seconds",
            "Seconds since the last successful index check (the stalest process).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        # the banks: every server process follows the same directory, so the largest value is
        # every process's (livemax), as for the index entries
        self.bank_records = Gauge(
            "hashmatch_bank_records",
            "Records in a bank's log.",
            ["bank"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.bank_contents = Gauge(
            "hashmatch_bank_contents",
            "A bank's contents (enabled or disabled; not deleted).",
            ["bank"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.bank_unfolded = Gauge(
            "hashmatch_bank_unfolded_records",
            "A bank's records the served version has not folded in (matched from the overlay).",
            ["bank"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.bank_fold_age = Gauge(
            "hashmatch_bank_seconds_since_fold",
            "Seconds since the served version's build read the bank (+Inf: never folded).",
            ["bank"],
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.overlay_contents = Gauge(
            "hashmatch_overlay_contents",
            "Bank contents added since the served version, searched beside the index.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.overlay_hidden = Gauge(
            "hashmatch_overlay_hidden",
            "Bank contents in the served version no longer matching (disabled, deleted).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.bank_unreadable = Gauge(
            "hashmatch_bank_unreadable_records",
            "Bank log lines skipped as unreadable (torn or damaged) since the process started.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self._version: str | None = None
        self._algorithms: set[str] = set()
        self._banks: set[str] = set()
        self._reloads_seen = 0
        self._failures_seen = 0

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        labels = (route, method, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)

    def observe_result(self, result: MatchResult) -> None:
        """Count a match result's matches and its error, if any."""
        for match in result.matches:
            self.matches.labels(match.list, match.algorithm).inc()
        if result.error_kind is not None:
            self.upload_errors.labels(result.error_kind).inc()

    def observe_index(self, watch: IndexWatch) -> None:
        """Read the watch's status, and the banks it follows (called after every check and
        tick)."""
        if isinstance(watch.banks, BankFollower):
            self.observe_banks(watch.banks, served_snapshot(watch.matcher))
        status = watch.status
        if status.reloads > self._reloads_seen:
            self.reloads.inc(status.reloads - self._reloads_seen)
            self._reloads_seen = status.reloads
        if status.failures > self._failures_seen:
            self.reload_failures.inc(status.failures - self._failures_seen)
            self._failures_seen = status.failures
        age = watch.seconds_since_success()
        self.check_age.set(age if age is not None else float("inf"))
        matcher = watch.matcher
        self.index_loaded.set(0 if matcher is None else 1)
        if matcher is None or matcher.version == self._version:
            return
        if self._version is not None:
            self.index_info.labels(self._version).set(0)
        self._version = matcher.version
        self.index_info.labels(matcher.version).set(1)
        served = matcher.info()["algorithms"]
        for name in self._algorithms - set(served):  # dropped by the new version: none served
            self.index_entries.labels(name).set(0)
        self._algorithms = set(served)
        for name, summary in served.items():
            self.index_entries.labels(name).set(summary["entries"])
        if status.load_seconds is not None:
            self.load_seconds.set(status.load_seconds)

    def observe_banks(self, follower: BankFollower, snapshot: LoadedIndex | None) -> None:
        """Read the banks' numbers against the served version (``snapshot``)."""
        stats = bank_stats(follower, snapshot)
        banks: dict[str, dict[str, Any]] = stats["banks"]
        for name in self._banks - set(banks):  # dropped: nothing left to match or fold
            for gauge in (self.bank_records, self.bank_contents, self.bank_unfolded):
                gauge.labels(name).set(0)
            self.bank_fold_age.labels(name).set(0)
        self._banks = set(banks)
        for name, numbers in banks.items():
            self.bank_records.labels(name).set(numbers["records"])
            self.bank_contents.labels(name).set(numbers["contents"])
            self.bank_unfolded.labels(name).set(numbers["unfolded_records"])
            age = numbers["seconds_since_fold"]
            self.bank_fold_age.labels(name).set(float("inf") if age is None else age)
        self.overlay_contents.set(stats["overlay_contents"])
        self.overlay_hidden.set(stats["overlay_hidden"])
        self.bank_unreadable.set(stats["unreadable_records"])

    def render(self) -> tuple[bytes, str]:
        """The exposition text (every server process's, in multiprocess mode)."""
        if os.environ.get(MULTIPROCESS_VARIABLE):
            combined = CollectorRegistry()
            prometheus_multiprocess.MultiProcessCollector(combined)
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
