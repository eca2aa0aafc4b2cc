"""The Ray Data pipeline of a cluster scan: listed files in, flat scan records out.

The listing goes into the dataset from the driver (``from_items``: no read tasks), and one
actor stage turns it into records. That shape is what makes the sizing safe: Ray Data hangs
when actors hold every CPU and tasks of another stage wait for one, and this pipeline has no
other stage, so its default takes every CPU of the cluster. It takes them as one actor per
node with a hashing process per CPU, not an actor per CPU: every Ray worker process costs
CPU of its own (measured about 12% of a core per actor here, whatever it does), so fewer,
wider actors leave more to decoding. A pipeline of a team's own that adds task stages after
this one streams better given fewer ``actors`` to leave them CPUs.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import warnings
from typing import TYPE_CHECKING, Any

from hashmatch.cluster.actor import ScanActor
from hashmatch.cluster.listing import ScanListing
from hashmatch.cluster.pinning import IndexPin
from hashmatch.errors import ClusterError, OptionError
from hashmatch.index.options import MatchOptions
from hashmatch.index.scan_records import record_columns
from hashmatch.registry import plugin_modules

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FORWARDED_PREFIXES",
    "INSTALL_HINT",
    "cluster_failure",
    "connect",
    "default_sizing",
    "records_dataset",
]

INSTALL_HINT = "pip install 'hashmatch[ray]'"
DEFAULT_BATCH_SIZE = 16
"""Files per actor call: small enough that a lost actor costs little work and records stream,
large enough that Ray's per-call cost (milliseconds) stays near 1% of hashing them."""
FORWARDED_PREFIXES = ("AWS_",)
"""The driver's environment variables the actors are given: object-store settings
(``AWS_ENDPOINT_URL``, credentials, region), so the same command reads the same bucket."""
_MAX_BLOCKS = 100_000
_CALLS_PER_ACTOR = 2
"""Batches an actor works on at once, at least: one hashing while the next one's files are
read (more for wide actors)."""


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise ClusterError(f"cluster scans need Ray: {INSTALL_HINT}") from None
    return ray


def connect(
    address: str | None = None, *, num_cpus: int | None = None, quiet: bool = False
) -> None:
    """Join the Ray cluster at ``address`` (``auto``, ``ray://host:10001``, ``host:6379``),
    else the one ``RAY_ADDRESS`` names, else start a new local one of ``num_cpus`` CPUs
    (never joining one that happens to run here: a scan runs where it was told to).
    ``quiet`` leaves Ray's own logging to its log files (a command prints its own errors).
    Does nothing if this process is connected already."""
    ray = _ray()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    settings: dict[str, Any] = {"logging_level": "WARNING"}
    if quiet:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # the driver's C++ side
        settings.update(logging_level="ERROR", log_to_driver=False)
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        ray.data.DataContext.get_current().enable_progress_bars = False  # ours instead
        warnings.filterwarnings("ignore", module=r"ray\.")  # sizing hints, deprecations
    if address is None:
        settings.update(address="local", include_dashboard=False, num_cpus=num_cpus)
    else:
        settings.update(address=address)
    try:
        ray.init(**settings)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = ""
        if address is not None and not os.environ.get("RAY_AUTH_MODE"):
            hint = (
                " (a cluster with token authentication, Ray's default, also needs"
                " RAY_AUTH_MODE=token and its token: RAY_AUTH_TOKEN, or ~/.ray/auth_token)"
            )
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}{hint}") from None


def default_sizing(cpus_per_actor: int | None = None) -> tuple[int, int]:
    """``(actors, cpus_per_actor)`` for the cluster as it is now: actors as wide as the
    smallest node (unless given), as many as fill every CPU (one per node on a uniform
    cluster)."""
    ray = _ray()
    nodes = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    nodes = [cpus for cpus in nodes if cpus > 0] or [1]
    width = cpus_per_actor or min(nodes)
    return max(1, sum(nodes) // width), width


def records_dataset(
    listing: ScanListing,
    pin: IndexPin,
    options: MatchOptions,
    *,
    actors: int | None = None,
    cpus_per_actor: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    with_hashes: bool = False,
    keep_skipped: bool = False,
    verify: bool = True,
) -> ray.data.Dataset:
    """The dataset of ``listing``'s flat scan records, computed by ``actors`` actors of
    ``cpus_per_actor`` hashing processes each (default: :func:`default_sizing`)."""
    ray = _ray()
    checked = (("actors", actors), ("cpus_per_actor", cpus_per_actor), ("batch_size", batch_size))
    for name, value in checked:
        wrong = isinstance(value, bool) or not isinstance(value, int) or value < 1
        if value is not None and wrong:
            raise OptionError(f"{name} must be a whole number >= 1, got {value!r}")
    connect()
    fitting, width = default_sizing(cpus_per_actor)
    size = actors or fitting
    if not listing.rows:
        columns = record_columns(pin.matched_algorithms(options), with_hashes, "flat")
        return ray.data.from_items([]).map_batches(lambda batch: {c: [] for c in columns})
    # a block is what an actor is handed, retries and hands back whole: two batches, so
    # records stream and the last ones spread over the actors (fewer, larger blocks past
    # _MAX_BLOCKS, where the driver's cost per block would tell)
    rows = len(listing.rows)
    per_block = max(2 * batch_size, -(-rows // _MAX_BLOCKS))
    blocks = -(-rows // per_block)
    size = min(size, blocks)  # an actor with nothing to do only costs its start
    files = ray.data.from_items(listing.rows, override_num_blocks=blocks)
    environment = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)}
    plugins = plugin_modules()

    class BoundScanActor(ScanActor):
        """The actor with this scan's settings built in (Ray pickles the class with them),
        importing first the modules that registered algorithms of the driver's own, as local
        worker processes do (they must be installed on every node)."""

        def __init__(self) -> None:
            for module in plugins:
                importlib.import_module(module)
            super().__init__(pin, options, with_hashes, keep_skipped, verify, workers=width)

    # batches at once per actor: enough that every hashing process has its next file queued
    calls = max(_CALLS_PER_ACTOR, -(-2 * width // batch_size))
    # Ray restarts a dead actor and retries its batch (max_restarts and max_task_retries
    # are -1 for actor pools by default)
    return files.map_batches(
        BoundScanActor,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(
            size=size,
            max_tasks_in_flight_per_actor=calls,
            max_concurrent_calls_per_actor=calls,
            enable_true_multi_threading=True,
        ),
        num_cpus=width,
        runtime_env={"env_vars": environment} if environment else None,
    )


def cluster_failure(exc: BaseException) -> ClusterError:
    """A failure of the cluster as one clear error: ours as raised on the actor (a version
    mismatch, say) when one is inside Ray's wrapping, else Ray's own last word."""
    import hashmatch.errors  # the module whose classes are ours

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__ == hashmatch.errors.__name__:
            return ClusterError(str(current))
        cause = getattr(current, "cause", None)  # Ray's RayTaskError holds the actor's
        if not isinstance(cause, BaseException):
            cause = current.__cause__ or current.__context__
        current = cause
    names = "|".join(hashmatch.errors.__all__)
    quoted = re.findall(rf"\b(?:{names}): (.+)", str(exc))
    if quoted:
        return ClusterError(quoted[-1].strip())
    lines = str(exc).strip().splitlines()
    return ClusterError(f"the cluster scan failed: {lines[-1] if lines else type(exc).__name__}")
