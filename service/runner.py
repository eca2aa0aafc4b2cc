"""Running the service: server processes on one port, and their supervisor.

:func:`serve` reserves the port and starts ``workers`` server processes (spawned, each a
uvicorn running :func:`~hashmatch.service.app.create_app`, each loading the index
memory-mapped, so they share its pages). Each server process listens on its own socket
bound to the port with ``SO_REUSEPORT``, so the kernel spreads new connections evenly: on
one shared listening socket, whichever process woke first accepted a whole burst of
connections, and a pipeline opening its few keep-alive connections together got one process
(measured: 100% of requests on one of two). The supervisor's own socket is bound, never
listening: it holds the port and receives nothing. Where ``SO_REUSEPORT`` is missing, the
processes share one listening socket instead. The supervisor restarts a server process that
dies (a ``SIGKILL``, the OOM killer), forwards ``SIGHUP`` (check the index now, re-read the
tokens) and on ``SIGTERM`` or ``SIGINT`` stops them (each stops accepting, finishes its
requests in flight within ``shutdown_timeout``) and returns 0.

uvicorn's settings are chosen here, in :func:`uvicorn_config`, on purpose: keep-alive and
shutdown timeouts, a header size cap (431/400 past 64 KiB), a concurrency cap (503), no
access log of its own (ours is one JSON line per request), no server header.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import wait
from typing import Any

from hashmatch.registry import plugin_modules
from hashmatch.service.config import BANK_LOCK_VARIABLE, MULTIPROCESS_VARIABLE, ServiceConfig
from hashmatch.service.limits import MAX_HEADER_BYTES

__all__ = ["configure_logging", "serve", "uvicorn_config"]

_log = logging.getLogger("hashmatch.service")

MAX_CONNECTIONS = 1024
"""Connections and requests a server process takes at once before answering 503."""
_FAILED_STARTS_LIMIT = 3
_RESTART_PAUSE = 0.5


def uvicorn_config(app: Any, config: ServiceConfig) -> Any:
    """The uvicorn settings every server process runs with."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        lifespan="on",
        http="h11",
        loop="asyncio",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=int(config.shutdown_timeout),
        limit_concurrency=MAX_CONNECTIONS,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )


def configure_logging(level: str) -> None:
    """Plain lines on stderr; request lines are JSON messages on their own logger."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def serve(config: ServiceConfig) -> int:
    """Serve until SIGTERM or SIGINT; the exit status (0 after a clean stop)."""
    reserved = _socket(config.host)
    reserved.bind((config.host, config.port))
    if not _REUSE_PORT:
        reserved.listen(_BACKLOG)
        reserved.set_inheritable(True)
    config = dataclasses.replace(config, port=int(reserved.getsockname()[1]))
    bank_lock = _bank_writer_lock(config)
    rebuilds = _rebuild_schedule(config)
    metrics_dir = tempfile.mkdtemp(prefix="hashmatch-metrics-")
    os.environ[MULTIPROCESS_VARIABLE] = metrics_dir
    # searches in server processes take one core each: the processes are the parallelism
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    supervisor = _Supervisor(config, None if _REUSE_PORT else reserved)
    if rebuilds is not None:
        rebuilds.start()
    try:
        return supervisor.run()
    finally:
        if rebuilds is not None:
            rebuilds.stop()
        reserved.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if bank_lock is not None:
            os.close(bank_lock)


def _bank_writer_lock(config: ServiceConfig) -> int | None:
    """The writing instance's lock on its bank directory, held here for the servers' life
    (BankLockedError if another process writes it); its servers are told by
    :data:`BANK_LOCK_VARIABLE` that they write under it."""
    if not config.bank_writer:
        return None
    from hashmatch.banks.directory import acquire_writer_lock

    descriptor = acquire_writer_lock(config.bank_directory)
    os.environ[BANK_LOCK_VARIABLE] = str(os.getpid())
    return descriptor


def _rebuild_schedule(config: ServiceConfig) -> Any:
    if not config.rebuilds:
        return None
    from hashmatch.banks.rebuild import RebuildSchedule

    assert config.rebuild_config is not None  # the config checks it
    return RebuildSchedule(
        config.rebuild_config,
        config.index,
        config.bank_directory,
        every=config.rebuild_every,
        after=config.rebuild_after,
        poll_interval=config.bank_poll_interval,
    )


_REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
_BACKLOG = 2048


def _socket(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio turns Nagle off (TCP_NODELAY) on accepted sockets
    # only when the listener's protocol is TCP; with 0 every response waited 40 ms for the
    # client's delayed ACK between its header and body writes
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if _REUSE_PORT:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


def _listener(config: ServiceConfig) -> socket.socket:
    """A server process's own listening socket on the service's port."""
    sock = _socket(config.host)
    sock.bind((config.host, config.port))
    sock.listen(_BACKLOG)
    return sock


class _Supervisor:
    def __init__(self, config: ServiceConfig, listener: socket.socket | None) -> None:
        self.config = config
        self.listener = listener
        """The shared listening socket, where ``SO_REUSEPORT`` is missing."""
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []
        self.ready: dict[int, Any] = {}
        self.stopping = threading.Event()
        self.reload_wanted = threading.Event()
        self.failed_starts = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        for _ in range(self.config.server_processes):
            self._start()
        _log.info(
            "hashmatch serve on http://%s:%d: %d server processes, %d hashing each",
            self.config.host,
            self.config.port,
            self.config.server_processes,
            self.config.hash_workers,
        )
        while not self.stopping.is_set():
            if self.reload_wanted.is_set():
                self.reload_wanted.clear()
                for process in self.processes:
                    _signal(process, signal.SIGHUP)
            sentinels = [process.sentinel for process in self.processes]
            wait(sentinels, timeout=0.2)
            for process in list(self.processes):
                if process.is_alive() or self.stopping.is_set():
                    continue
                if self._replace(process):
                    return 2
        return self._stop()

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping.set()

    def _on_hup(self, signum: int, frame: object) -> None:
        self.reload_wanted.set()

    def _start(self) -> None:
        ready = self.context.Event()
        process = self.context.Process(
            target=_server_process,
            args=(self.config, self.listener, ready, plugin_modules()),
            name="hashmatch-server",
            daemon=False,
        )
        process.start()
        assert process.pid is not None  # started
        self.processes.append(process)
        self.ready[process.pid] = ready

    def _replace(self, process: Any) -> bool:
        """Start a server process in place of a dead one; True if they keep failing to start."""
        process.join()
        self.processes.remove(process)
        started = self.ready.pop(process.pid).is_set()
        mark_process_dead(process.pid)
        _log.warning(
            "server process %d died (%s); starting another", process.pid, _exit(process.exitcode)
        )
        if started:
            self.failed_starts = 0
        else:
            self.failed_starts += 1
            if self.failed_starts >= _FAILED_STARTS_LIMIT:
                _log.error(
                    "server processes fail to start (%d times in a row); stopping",
                    self.failed_starts,
                )
                self._stop()
                return True
            time.sleep(_RESTART_PAUSE * self.failed_starts)
        self._start()
        return False

    def _stop(self) -> int:
        """Let the servers finish what is in flight, and stop them."""
        _log.info("stopping: finishing requests (up to %g s)", self.config.shutdown_timeout)
        if self.listener is not None:
            self.listener.close()
        for process in self.processes:
            _signal(process, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout + 15
        for process in self.processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                _log.warning("server process %d did not stop in time: killed", process.pid)
                process.kill()
                process.join()
            mark_process_dead(process.pid)
        self.processes.clear()
        return 0


def mark_process_dead(pid: int) -> None:
    """Drop a dead server process's live gauges from the shared metrics directory."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def _signal(process: Any, number: int) -> None:
    if process.pid is not None and process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, number)


def _exit(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _server_process(
    config: ServiceConfig, listener: socket.socket | None, ready: Any, plugins: tuple[str, ...]
) -> None:
    """One server process: the app on uvicorn, on its own listener (or the shared one),
    knowing the algorithms the supervisor's program registered (``plugins``: their
    modules)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    configure_logging(config.log_level)
    for module in plugins:
        importlib.import_module(module)
    import uvicorn

    from hashmatch.service.app import create_app

    app = create_app(config)
    server = uvicorn.Server(uvicorn_config(app, config))

    def reload_on_hup(signum: int, frame: object) -> None:
        state = getattr(app.state, "service", None)
        if state is not None:
            state.reload()

    signal.signal(signal.SIGHUP, reload_on_hup)

    def announce_ready() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.05)
        if server.started:
            ready.set()

    threading.Thread(target=announce_ready, name="hashmatch-ready", daemon=True).start()
    server.run(sockets=[listener if listener is not None else _listener(config)])
    if not server.started:
        sys.exit(3)  # startup failed (the lifespan logged why)
