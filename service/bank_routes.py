"""The native bank API under ``/v1/banks``: curating live banks in hashmatch's own shapes.

HMA's curation routes answer HMA's shapes; these say what HMA cannot: every bank with how
far the served version lags its log, contents paginated by id, many contents added in one
durable append (all or nothing), exclusions (confirmed false positives, of any list), and
each bank's audit trail. Changes go through the instance's writer (:meth:`ServiceState.writer`:
403 on an instance that only reads the banks) and name the caller's token by its name;
reads first catch up with the logs (:meth:`BankFollower.poll`), so a read after a write, on
any server process, sees it. Errors are ``{"message"}`` bodies (:class:`ServiceError`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, StrictBool, StrictInt

from hashmatch.banks import BankDirectory, NewContent
from hashmatch.banks.log import LOG_SUFFIX, LogProblem
from hashmatch.banks.records import (
    DISABLED,
    ENABLED,
    MAX_NOTE,
    BankRecord,
    check_disable_until,
    decode_line,
    validated_signals,
)
from hashmatch.banks.state import BankState, ExclusionKey, enabled_value
from hashmatch.errors import BankError
from hashmatch.service.metrics import bank_stats, served_snapshot
from hashmatch.service.state import ServiceError, ServiceState, service_state

__all__ = ["DEFAULT_PAGE", "MAX_PAGE", "router"]

router = APIRouter(prefix="/v1/banks", tags=["banks"])

DEFAULT_PAGE = 100
MAX_PAGE = 1000
"""Items per page of contents or log records: the default, and the most one page holds."""

_LOG_CHUNK = 1 << 20

Ratio = Annotated[float, Field(strict=True, description="Share of lookups the bank answers.")]


# --- request bodies ------------------------------------------------------------------------


class NewBankRequest(BaseModel):
    name: str = Field(description="UPPER_WITH_UNDERSCORE, at most 100 characters.")
    matching_enabled_ratio: Ratio = 1.0


class BankUpdateRequest(BaseModel):
    matching_enabled_ratio: Ratio


class NewContentRequest(BaseModel):
    signals: dict[str, str] = Field(description="Algorithm name -> hex hash.")
    note: str | None = Field(default=None, max_length=MAX_NOTE)
    metadata: dict[str, Any] | None = None
    uri: str | None = Field(default=None, max_length=MAX_NOTE)
    disable_until_ts: StrictInt = Field(
        default=ENABLED, description="1 enabled, 0 disabled, a later Unix time: enabled then."
    )


class NewContentsRequest(BaseModel):
    contents: list[NewContentRequest] = Field(description="Added in one append, in order.")


class ContentUpdateRequest(BaseModel):
    disable_until_ts: StrictInt | None = None
    enabled: StrictBool | None = Field(
        default=None, description="true: disable_until_ts 1; false: 0 (one or the other)."
    )


class HashExclusion(BaseModel):
    algorithm: str
    hash: str


class EntryExclusion(BaseModel):
    list: str
    entry_id: str


class ExclusionsRequest(BaseModel):
    hashes: list[HashExclusion] = Field(default_factory=list)
    entries: list[EntryExclusion] = Field(default_factory=list)


After = Annotated[str | None, Query(description="Answer what comes after this id/sequence.")]
Limit = Annotated[
    str | None, Query(description=f"Items per page, 1-{MAX_PAGE} (default {DEFAULT_PAGE}).")
]


# --- helpers -------------------------------------------------------------------------------


@contextmanager
def _bank_errors() -> Iterator[None]:
    """A refused bank call as the answer it means (its status, its message)."""
    try:
        yield
    except BankError as exc:
        raise ServiceError(exc.status, str(exc)) from None


@contextmanager
def _current(service: ServiceState) -> Iterator[BankDirectory]:
    """The directory caught up with its logs, held still while an answer is read from it."""
    follower = service.banks
    with follower.directory.locked():
        follower.poll()
        yield follower.directory


def _caller(request: Request) -> str | None:
    """The caller's token name, which records carry (never the token; None without auth)."""
    caller = getattr(request.state, "caller", None)
    return caller if isinstance(caller, str) else None


def _served_stats(service: ServiceState) -> dict[str, Any]:
    """The banks' numbers against the version served now."""
    return bank_stats(service.banks, served_snapshot(service.watch.matcher))


def _bank_json(state: BankState, stats: dict[str, Any]) -> dict[str, Any]:
    """A bank's settings and counts, and how far the served version lags its log."""
    numbers = stats["banks"].get(state.name, {})
    return {
        **state.to_json(),
        "unfolded_records": numbers.get("unfolded_records"),
        "seconds_since_fold": numbers.get("seconds_since_fold"),
    }


def _bank_answer(service: ServiceState, name: str) -> dict[str, Any]:
    with _current(service) as directory, _bank_errors():
        return _bank_json(directory.bank(name), _served_stats(service))


def _whole(value: str | None, name: str, default: int, low: int, high: int | None) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if number < low or (high is not None and number > high):
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise ServiceError(400, f"{name} must be a whole number {bound}, got {value!r}")
    return number


def _page(after: str | None, limit: str | None) -> tuple[int, int]:
    return _whole(after, "after", 0, 0, None), _whole(limit, "limit", DEFAULT_PAGE, 1, MAX_PAGE)


def _flag(value: str | None, name: str) -> bool:
    if value is None:
        return False
    text = value.strip().lower()
    if text not in ("true", "false", "1", "0"):
        raise ServiceError(400, f"{name} must be true or false, got {value!r}")
    return text in ("true", "1")


def _content_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ServiceError(400, f"a content id is a whole number >= 1, got {value!r}")
    return int(value)


def _capped(service: ServiceState, count: int, what: str) -> None:
    cap = service.config.max_queries
    if count > cap:
        raise ServiceError(413, f"at most {cap} {what} per request (--max-queries)")


# --- banks ---------------------------------------------------------------------------------


@router.get("")
def list_banks(request: Request) -> dict[str, Any]:
    """Every bank: its settings and counts, and how far the served version lags it
    (``unfolded_records``, ``seconds_since_fold``: None when no build has read it); the
    overlay's size and the unreadable log lines of the directory."""
    service = service_state(request)
    with _current(service) as directory:
        stats = _served_stats(service)
        banks = [_bank_json(state, stats) for state in directory.existing()]
    return {
        "banks": banks,
        "overlay_contents": stats["overlay_contents"],
        "overlay_hidden": stats["overlay_hidden"],
        "unreadable_records": stats["unreadable_records"],
        "writer": service.bank_writer is not None,
    }


@router.post("", status_code=201)
def create_bank(request: Request, body: NewBankRequest) -> dict[str, Any]:
    """Create a bank (201); 403 ``Bank already exists``, 400 for a bad name."""
    service = service_state(request)
    with _bank_errors():
        state = service.writer().create_bank(
            body.name, body.matching_enabled_ratio, by=_caller(request)
        )
    return _bank_answer(service, state.name)


@router.get("/{name}")
def get_bank(request: Request, name: str) -> dict[str, Any]:
    return _bank_answer(service_state(request), name)


@router.patch("/{name}")
def update_bank(request: Request, name: str, body: BankUpdateRequest) -> dict[str, Any]:
    """Change the bank's ``matching_enabled_ratio``."""
    service = service_state(request)
    with _bank_errors():
        service.writer().update_bank(name, body.matching_enabled_ratio, by=_caller(request))
    return _bank_answer(service, name)


@router.delete("/{name}")
def drop_bank(request: Request, name: str) -> dict[str, Any]:
    """Drop the bank and its contents (they stop matching at once); its log stays, so
    ``/log`` still tells its story. 404 if there is no such bank."""
    service = service_state(request)
    with _bank_errors():
        if not service.writer().drop_bank(name, by=_caller(request)):
            raise BankError(f"bank '{name}' not found", 404)
    return {"name": name, "deleted": True}


# --- contents ------------------------------------------------------------------------------


@router.get("/{name}/contents")
def list_contents(
    request: Request,
    name: str,
    after: After = None,
    limit: Limit = None,
    include_disabled: Annotated[
        str | None, Query(description="Also list disabled contents (default false).")
    ] = None,
) -> dict[str, Any]:
    """A page of the bank's contents by id: ``{"contents": [...], "next_after": id}``, the
    id to ask ``after`` for the next page (None: this was the last). Deleted contents are
    never listed; disabled ones only with ``include_disabled=true``."""
    start, count = _page(after, limit)
    disabled_too = _flag(include_disabled, "include_disabled")
    service = service_state(request)
    now = time.time()
    with _current(service) as directory, _bank_errors():
        state = directory.bank(name)
        page: list[dict[str, Any]] = []
        more = False
        for content in sorted(key for key in state.entries if key > start):
            entry = state.entries[content]
            if entry.deleted or not (disabled_too or enabled_value(entry.disable_until_ts, now)):
                continue
            if len(page) == count:
                more = True
                break
            page.append(entry.to_json())
    return {"contents": page, "next_after": page[-1]["id"] if more else None}


@router.post("/{name}/contents", status_code=201)
def add_contents(request: Request, name: str, body: NewContentsRequest) -> dict[str, Any]:
    """Add contents in one durable append, all or nothing: a bad item (400 naming it, as
    ``contents[k]``) adds none. Answers their new ids, in the order sent."""
    service = service_state(request)
    writer = service.writer()
    _capped(service, len(body.contents), "contents")
    if not body.contents:
        raise ServiceError(400, "contents: nothing to add")
    items = []
    now = time.time()
    for number, item in enumerate(body.contents):
        where = f"contents[{number}]"
        try:
            if not item.signals:
                raise BankError("No signals given")
            signals = validated_signals(item.signals, f"{where}.signals")
            check_disable_until(item.disable_until_ts, now)
        except BankError as exc:
            message = str(exc)
            raise ServiceError(
                400, message if message.startswith(where) else f"{where}: {message}"
            ) from None
        items.append(NewContent(signals, item.note, item.metadata, item.uri, item.disable_until_ts))
    with _bank_errors():
        added = writer.add(name, items, by=_caller(request))
    return {"ids": [entry.id for entry in added]}


@router.get("/{name}/contents/{content_id}")
def get_content(request: Request, name: str, content_id: str) -> dict[str, Any]:
    content = _content_id(content_id)
    service = service_state(request)
    with _current(service) as directory, _bank_errors():
        return directory.content(name, content).to_json()


@router.patch("/{name}/contents/{content_id}")
def update_content(
    request: Request, name: str, content_id: str, body: ContentUpdateRequest
) -> dict[str, Any]:
    """Disable or enable a content: ``{"enabled": bool}``, or ``{"disable_until_ts": T}``
    (0 disabled, 1 enabled, a later time: enabled from then). Lookups see it at once."""
    content = _content_id(content_id)
    if (body.enabled is None) == (body.disable_until_ts is None):
        raise ServiceError(400, "give one of enabled or disable_until_ts")
    if body.disable_until_ts is not None:
        value = body.disable_until_ts
    else:
        value = ENABLED if body.enabled else DISABLED
    service = service_state(request)
    with _bank_errors():
        entry = service.writer().set_disabled_until(name, content, value, by=_caller(request))
    return entry.to_json()


@router.delete("/{name}/contents/{content_id}")
def delete_content(request: Request, name: str, content_id: str) -> dict[str, Any]:
    """Delete a content (it stops matching at once): ``{"deleted": 1}``, or 0 when there
    was none (already deleted: repeating a delete is harmless)."""
    content = _content_id(content_id)
    service = service_state(request)
    with _bank_errors():
        deleted = service.writer().delete(name, content, by=_caller(request))
    return {"deleted": deleted}


# --- exclusions ----------------------------------------------------------------------------


def _exclusions_json(keys: list[ExclusionKey]) -> dict[str, list[dict[str, str]]]:
    return {
        "hashes": [{"algorithm": a, "hash": b} for kind, a, b in keys if kind == "hash"],
        "entries": [{"list": a, "entry_id": b} for kind, a, b in keys if kind == "entry"],
    }


def _exclusion_keys(service: ServiceState, body: ExclusionsRequest) -> list[ExclusionKey]:
    keys: list[ExclusionKey] = [("hash", item.algorithm, item.hash) for item in body.hashes]
    keys.extend(("entry", item.list, item.entry_id) for item in body.entries)
    _capped(service, len(keys), "exclusions")
    return keys


@router.get("/{name}/exclusions")
def list_exclusions(request: Request, name: str) -> dict[str, Any]:
    """The bank's active exclusions: stored hashes and list entries no lookup matches."""
    service = service_state(request)
    with _current(service) as directory, _bank_errors():
        return _exclusions_json(directory.bank(name).active_exclusions())


@router.post("/{name}/exclusions")
def add_exclusions(request: Request, name: str, body: ExclusionsRequest) -> dict[str, Any]:
    """Record confirmed false positives: from now on no lookup answers a match with one of
    these stored hashes (``{"algorithm", "hash"}``) or list entries (``{"list",
    "entry_id"}``), whichever list holds it, published or added. Answers them normalised."""
    service = service_state(request)
    keys = _exclusion_keys(service, body)
    with _bank_errors():
        checked = service.writer().exclude(name, keys, by=_caller(request))
    return _exclusions_json(checked)


@router.delete("/{name}/exclusions")
def remove_exclusions(request: Request, name: str, body: ExclusionsRequest) -> dict[str, Any]:
    """Lift exclusions (the same body as adding them): what the overlay hid matches again
    at once. An exclusion a build already folded in (its codes left out of the published
    version) is lifted by the next rebuild."""
    service = service_state(request)
    keys = _exclusion_keys(service, body)
    with _bank_errors():
        checked = service.writer().exclude(name, keys, by=_caller(request), undo=True)
    return _exclusions_json(checked)


# --- the audit trail -----------------------------------------------------------------------


def _record_json(record: BankRecord) -> dict[str, Any]:
    moment = datetime.fromtimestamp(record.at, timezone.utc)
    return {
        "seq": record.seq,
        "op": record.op,
        "at": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "at_unix": record.at,
        "by": record.by,
        **record.fields,
    }


@router.get("/{name}/log")
def bank_log(
    request: Request, name: str, after: After = None, limit: Limit = None
) -> dict[str, Any]:
    """The bank's audit trail: its records in order (``seq``, ``op``, ``at`` in ISO 8601
    UTC and ``at_unix``, ``by``: the token name the writer recorded, and the operation's
    fields), ``next_after`` the ``seq`` to ask for the next page. A dropped bank's log is
    still there. ``unreadable`` counts the lines of this page's stretch of the log that could
    not be read (torn or damaged: skipped, here as everywhere), ``problems`` says which."""
    start, count = _page(after, limit)
    service = service_state(request)
    with _current(service) as directory:
        if name not in directory.banks:  # only names read from the directory make a path
            raise ServiceError(404, f"bank '{name}' not found")
        path = directory.path / f"{name}{LOG_SUFFIX}"
    records, problems, more = read_log_page(path, start, count)
    return {
        "records": [_record_json(record) for record in records],
        "next_after": records[-1].seq if more and records else None,
        "unreadable": len(problems),
        "problems": [{"line": p.line, "reason": p.reason} for p in problems[:MAX_PAGE]],
    }


_positions: dict[tuple[str, int, int], tuple[int, int]] = {}
"""(log path, inode, seq) -> (byte offset, line number) just after that record, for the last
records of pages answered: the next page starts there, so paging through a long log reads
each line about once. A log is only ever appended to (a replaced file has another inode)."""
_positions_lock = threading.Lock()
_POSITIONS_KEPT = 256

Page = tuple[list[BankRecord], list[LogProblem], bool]


def read_log_page(path: Path, after: int, limit: int) -> Page:
    """Up to ``limit`` records with ``seq`` above ``after``, in log order; the unreadable
    lines after the last record at or before ``after`` up to the page's last record (the
    last page: up to the log's end); and whether more records follow."""
    try:
        with open(path, "rb") as file:
            return _page_of(file, path, after, limit)
    except FileNotFoundError:
        return [], [], False


def _page_of(file: BinaryIO, path: Path, after: int, limit: int) -> Page:
    inode = os.fstat(file.fileno()).st_ino
    with _positions_lock:
        offset, line = _positions.get((str(path), inode, after), (0, 0))
    file.seek(offset)
    records: list[BankRecord] = []
    problems: list[LogProblem] = []
    trailing: list[LogProblem] = []  # after the last record kept: ours if no record follows
    kept_at = (offset, line)
    pending = b""
    while data := file.read(_LOG_CHUNK):
        pending += data
        end = pending.rfind(b"\n")
        if end < 0:
            continue
        complete, pending = pending[: end + 1], pending[end + 1 :]
        for raw in complete.split(b"\n")[:-1]:
            line += 1
            offset += len(raw) + 1
            try:
                record = decode_line(raw)
            except ValueError as exc:
                trailing.append(LogProblem(str(path), line, str(exc)))
                continue
            if record.seq <= after:
                trailing.clear()  # an earlier page's
                continue
            if len(records) == limit:
                _remember((str(path), inode, records[-1].seq), kept_at)
                return records, problems, True
            records.append(record)
            problems.extend(trailing)
            trailing.clear()
            kept_at = (offset, line)
    return records, problems + trailing, False


def _remember(key: tuple[str, int, int], position: tuple[int, int]) -> None:
    with _positions_lock:
        if len(_positions) >= _POSITIONS_KEPT:
            _positions.pop(next(iter(_positions)))
        _positions[key] = position
