"""``hashmatch serve INDEX``: the HTTP matching service (HMA-compatible routes and ``/v1``).

Every flag is also an environment variable (``HASHMATCH_<NAME>``); both come from
:mod:`hashmatch.service.config`, where the settings are declared once. The service's
packages are an extra; without them this says what to install.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any

import typer

from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.output import print_error, stderr_console
from hashmatch.errors import HashmatchError

_SERVE_PACKAGES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "prometheus_client": "prometheus-client",
    "httpx": "httpx",
    "multipart": "python-multipart",
}


def _option(field: str, *flags: str) -> Any:
    from hashmatch.service.config import SETTINGS, environment_variable

    return typer.Option(
        *(flags or (f"--{field.replace('_', '-')}",)),
        envvar=environment_variable(field),
        help=SETTINGS[field],
        show_default=False,
        show_envvar=True,
    )


def serve_command(
    index: Annotated[
        Path, typer.Argument(help="The index directory to serve.", envvar="HASHMATCH_INDEX")
    ],
    host: Annotated[str | None, _option("host")] = None,
    port: Annotated[int | None, _option("port")] = None,
    workers: Annotated[int | None, _option("workers")] = None,
    hash_workers: Annotated[int | None, _option("hash_workers")] = None,
    token_file: Annotated[Path | None, _option("token_file")] = None,
    insecure_no_auth: Annotated[bool, _option("insecure_no_auth")] = False,
    public_metrics: Annotated[bool, _option("public_metrics")] = False,
    reload_interval: Annotated[float | None, _option("reload_interval")] = None,
    stale_after: Annotated[float | None, _option("stale_after")] = None,
    max_upload_bytes: Annotated[int | None, _option("max_upload_bytes")] = None,
    max_pixels: Annotated[int | None, _option("max_pixels")] = None,
    max_side: Annotated[int | None, _option("max_side")] = None,
    time_limit: Annotated[float | None, _option("time_limit")] = None,
    body_timeout: Annotated[float | None, _option("body_timeout")] = None,
    shutdown_timeout: Annotated[float | None, _option("shutdown_timeout")] = None,
    max_batch: Annotated[int | None, _option("max_batch")] = None,
    max_queries: Annotated[int | None, _option("max_queries")] = None,
    max_waiting: Annotated[int | None, _option("max_waiting")] = None,
    fetch_hosts: Annotated[list[str] | None, _option("fetch_hosts", "--fetch-host")] = None,
    fetch_private: Annotated[bool, _option("fetch_private")] = False,
    fetch_timeout: Annotated[float | None, _option("fetch_timeout")] = None,
    verify: Annotated[bool, _option("verify", "--verify/--no-verify")] = True,
    log_level: Annotated[str | None, _option("log_level")] = None,
    banks: Annotated[Path | None, _option("banks")] = None,
    bank_writer: Annotated[bool, _option("bank_writer")] = False,
    bank_poll_interval: Annotated[float | None, _option("bank_poll_interval")] = None,
    rebuild_config: Annotated[Path | None, _option("rebuild_config")] = None,
    rebuild_every: Annotated[float | None, _option("rebuild_every")] = None,
    rebuild_after: Annotated[int | None, _option("rebuild_after")] = None,
) -> None:
    """Serve INDEX over HTTP: HMA's matching API, plus /v1 (match, batch, lookup, hash).

    Runs until SIGTERM or Ctrl-C (then finishes requests in flight and exits 0); SIGHUP
    checks the index now and re-reads the token file. Exit 2 on bad options or an index
    that cannot be served.
    """
    missing = [pip for module, pip in _SERVE_PACKAGES.items() if not _installed(module)]
    if missing:
        print_error(
            f"hashmatch serve needs the serve extra (missing: {', '.join(missing)}):"
            " pip install 'hashmatch[serve]'"
        )
        raise typer.Exit(ExitCode.FAILED)
    from hashmatch.service.auth import read_tokens
    from hashmatch.service.config import ServiceConfig, exposure_problem
    from hashmatch.service.runner import configure_logging, serve

    given = {
        "host": host,
        "port": port,
        "workers": workers,
        "hash_workers": hash_workers,
        "token_file": token_file,
        "reload_interval": reload_interval,
        "stale_after": stale_after,
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_side": max_side,
        "time_limit": time_limit,
        "body_timeout": body_timeout,
        "shutdown_timeout": shutdown_timeout,
        "max_batch": max_batch,
        "max_queries": max_queries,
        "max_waiting": max_waiting,
        "fetch_timeout": fetch_timeout,
        "log_level": log_level.lower() if log_level else None,
        "banks": banks,
        "bank_poll_interval": bank_poll_interval,
        "rebuild_config": rebuild_config,
        "rebuild_every": rebuild_every,
        "rebuild_after": rebuild_after,
    }
    settings: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    hosts = tuple(h.strip() for value in fetch_hosts or () for h in value.split(",") if h.strip())
    try:
        config = ServiceConfig(
            index=index,
            insecure_no_auth=insecure_no_auth,
            public_metrics=public_metrics,
            fetch_hosts=hosts,
            fetch_private=fetch_private,
            verify=verify,
            bank_writer=bank_writer,
            **settings,
        )
        _check_index(config.index)
        if config.token_file is not None:
            read_tokens(config.token_file)
    except HashmatchError as exc:
        print_error(exc)
        raise typer.Exit(ExitCode.FAILED) from None
    problem = exposure_problem(config)
    if problem is not None:
        message, refused = problem
        if refused:
            print_error(message)
            raise typer.Exit(ExitCode.FAILED)
        stderr_console().print(f"warning: {message}", markup=False, highlight=False)
    configure_logging(config.log_level)
    try:
        status = serve(config)
    except OSError as exc:  # the port is taken, the address is not ours
        print_error(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}")
        raise typer.Exit(ExitCode.FAILED) from None
    except HashmatchError as exc:  # another writer holds the banks, a bad rebuild config
        print_error(exc)
        raise typer.Exit(ExitCode.FAILED) from None
    raise typer.Exit(status)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _check_index(path: Path) -> None:
    """Refuse at once a path that holds no published index (the servers would only retry)."""
    from hashmatch.errors import IndexFormatError
    from hashmatch.index.artifact import checked_index_path, resolve_version

    directory = resolve_version(checked_index_path(path))
    if not directory.is_dir():
        raise IndexFormatError(f"{path}: no published version to serve")
