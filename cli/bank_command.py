"""``hashmatch bank create | add | disable | enable | delete | exclude | list | log``: curate a
bank directory without a server.

The writers are thin layers over :class:`~hashmatch.banks.BankWriter`, which takes the
directory's writer lock: while a server (or another command) writes the directory they are
refused, with the holder named, and exit 2. The readers (``list``, ``log``) take no lock and
work while a server writes. Unreadable log lines are reported on stderr with their file and
line, and make a reader exit 1 (as ``index verify`` does for damage) after printing the rest.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from hashmatch.banks import BankDirectory, BankEntry, BankState, BankWriter, NewContent
from hashmatch.banks.directory import default_bank_directory
from hashmatch.banks.log import LOG_SUFFIX, LogProblem, LogRead, read_tail
from hashmatch.banks.records import DISABLED, ENABLED, check_bank_name, validated_signals
from hashmatch.banks.state import ExclusionKey
from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.options import OutputFormatOption
from hashmatch.cli.output import (
    OutputFormat,
    RecordWriter,
    choose_format,
    open_writer,
    print_error,
    stderr_console,
)
from hashmatch.errors import BankError, HashmatchError
from hashmatch.hashing import hash_image
from hashmatch.index.verdict import low_quality_algorithms
from hashmatch.lists import DEFAULT_MAX_INVALID, HashListReader, ListStats, parse_fraction
from hashmatch.lists.readers import LIST_FORMATS
from hashmatch.lists.validate import ValidChunk
from hashmatch.registry import DEFAULT_ALGORITHMS, get_algorithm

app = typer.Typer(
    help="Curate live banks (hash lists hashmatch writes itself) in a bank directory.",
    no_args_is_help=True,
    add_completion=False,
)

ADD_CHUNK = 1000
"""Contents per :meth:`BankWriter.add` call when adding a list file: each call is one durable
append, so a million-line file never becomes one giant batch of records."""

BANK_COLUMNS = ["name", "ratio", "contents", "records", "exclusions"]
CONTENT_COLUMNS = ["id", "state", "signals", "note", "added_at", "added_by"]
ADDED_COLUMNS = ["id", "signals", "note", "source"]
LOG_COLUMNS = ["seq", "time", "by", "op", "fields"]

BankArgument = Annotated[str, typer.Argument(help="The bank (UPPER_WITH_UNDERSCORE).")]
IndexOption = Annotated[
    Path | None,
    typer.Option("--index", help="An index directory: its banks are in INDEX/banks."),
]
BanksOption = Annotated[
    Path | None, typer.Option("--banks", help="The bank directory (instead of --index).")
]
ByOption = Annotated[
    str | None,
    typer.Option("--by", help="Who makes the change, for the log. [default: cli:$USER]"),
]


# -- where, who, and failures ---------------------------------------------------------------


def _bank_directory(index: Path | None, banks: Path | None) -> Path:
    if banks is not None and index is None:
        return banks
    if index is not None and banks is None:
        return default_bank_directory(index)
    raise typer.BadParameter(
        "give --index INDEX or --banks DIR (one of the two)", param_hint="'--index' / '--banks'"
    )


def _existing_directory(index: Path | None, banks: Path | None) -> Path:
    path = _bank_directory(index, banks)
    if not path.is_dir():
        raise BankError(f"{path}: no bank directory", 404)
    return path


def _actor(by: str | None) -> str:
    """``--by``, else ``cli:$USER``: every record says who made it."""
    if by:
        return by
    user = os.environ.get("USER")
    if not user:
        try:
            user = getpass.getuser()
        except (OSError, KeyError):
            user = "unknown"
    return f"cli:{user}"


@contextmanager
def _failures() -> Iterator[None]:
    """A refused call (a bad hash, an unknown bank, the lock held elsewhere) as one
    ``error:`` line and exit code 2."""
    try:
        yield
    except (HashmatchError, OSError) as exc:
        print_error(exc)
        raise typer.Exit(ExitCode.FAILED) from None


@contextmanager
def _writing(
    index: Path | None, banks: Path | None, *, create: bool = False
) -> Iterator[BankWriter]:
    """The directory's one writer (BankLockedError naming the holder if it is taken), caught
    up with every log; only ``create`` may make the directory."""
    path = _bank_directory(index, banks) if create else _existing_directory(index, banks)
    with BankWriter(path) as writer:
        writer.directory.refresh()
        yield writer


@contextmanager
def _own_problem_reports() -> Iterator[None]:
    """The banks' logger warns of each unreadable line as it reads; the readers report them
    themselves, once each, so the logger is quiet meanwhile."""
    logger = logging.getLogger("hashmatch.banks")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _exit_for_problems(problems: Sequence[LogProblem], count: int) -> None:
    for problem in problems:
        print_error(problem)
    if count > len(problems):
        print_error(f"{count} unreadable records in all (the last {len(problems)} shown)")
    if count:
        raise typer.Exit(ExitCode.FOUND)


# -- output ---------------------------------------------------------------------------------


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _state(entry: BankEntry, now: float) -> str:
    value = entry.disable_until_ts
    if entry.deleted:
        return "deleted"
    if value == DISABLED:
        return "disabled"
    if value == ENABLED or now >= value:
        return "enabled"
    return f"disabled until {_iso(value)}"


def _bank_record(state: BankState) -> dict[str, Any]:
    return {
        "name": state.name,
        "ratio": state.ratio,
        "contents": state.live_entries,
        "records": state.last_seq,
        "exclusions": len(state.active_exclusions()),
        "created_at": _iso(state.created_at),
        "last_record_at": _iso(state.last_at),
    }


def _content_record(entry: BankEntry, now: float) -> dict[str, Any]:
    return {
        "id": entry.id,
        "state": _state(entry, now),
        "signals": dict(entry.signals),
        "note": entry.note,
        "added_at": _iso(entry.added_at),
        "added_by": entry.added_by,
        "disable_until_ts": entry.disable_until_ts,
        "metadata": entry.metadata,
        "uri": entry.uri,
    }


def _print_records(
    output_format: OutputFormat | None,
    columns: list[str],
    records: Iterable[dict[str, Any]],
    title: str | None = None,
) -> None:
    writer = open_writer(choose_format(output_format, None), columns, table_title=title)
    try:
        for record in records:
            writer.write(record)
    finally:
        writer.close()


# -- create ---------------------------------------------------------------------------------


@app.command("create")
def create_command(
    bank: BankArgument,
    ratio: Annotated[
        float | None,
        typer.Option(
            "--ratio",
            help="The share of its contents that match (HMA's enabled_ratio, 0..1); given for"
            " an existing bank, sets its ratio. [default: 1]",
        ),
    ] = None,
    index: IndexOption = None,
    banks: BanksOption = None,
    by: ByOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """Create a bank (or, with --ratio, set an existing bank's ratio)."""
    with _failures(), _writing(index, banks, create=True) as writer:
        existing = writer.directory.banks.get(bank)
        if existing is not None and existing.exists and ratio is not None:
            state = writer.update_bank(bank, ratio, by=_actor(by))
        else:
            state = writer.create_bank(bank, 1.0 if ratio is None else ratio, by=_actor(by))
    _print_records(output_format, BANK_COLUMNS, [_bank_record(state)])


# -- add ------------------------------------------------------------------------------------


@app.command("add")
def add_command(
    bank: BankArgument,
    values: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="HASH",
            help="Hashes (HEX, or ALGORITHM:HEX); with --from-image, image files.",
        ),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="A hash list file (CSV, lines, hex, JSONL).")
    ] = None,
    from_image: Annotated[
        bool, typer.Option("--from-image", help="The arguments are images: add their hashes.")
    ] = False,
    algorithm: Annotated[
        str, typer.Option("--algorithm", "-a", help="Of hashes and list rows that do not say.")
    ] = DEFAULT_ALGORITHMS[0],
    note: Annotated[
        str | None,
        typer.Option(
            "--note", help="A note (the label matches carry); with --file, for unlabelled rows."
        ),
    ] = None,
    list_format: Annotated[
        str, typer.Option("--list-format", help=f"auto | {' | '.join(LIST_FORMATS)}.")
    ] = "auto",
    strict: Annotated[
        bool, typer.Option("--strict", help="With --file: one bad line adds nothing.")
    ] = False,
    max_invalid: Annotated[
        str | None,
        typer.Option(
            help="With --file: add nothing if more lines than this are bad. [default: 1%]"
        ),
    ] = None,
    index: IndexOption = None,
    banks: BanksOption = None,
    by: ByOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """Add contents and print their new ids: hashes, a list file's rows (bad lines skipped and
    reported, as a build does) or images' hashes (too flat ones refused)."""
    if sum((file is not None, from_image, bool(values) and not from_image)) != 1:
        raise typer.BadParameter(
            "give hashes, --file LIST, or --from-image IMAGE... (one of them)", param_hint="HASH"
        )
    if from_image and not values:
        raise typer.BadParameter("--from-image needs image files", param_hint="HASH")
    actor = _actor(by)
    writer: RecordWriter | None = None
    added = 0
    try:
        with _failures(), _writing(index, banks) as bank_writer:
            bank_writer.directory.bank(bank)  # an unknown bank fails before any reading
            algorithm = get_algorithm(algorithm).name
            if file is not None:
                limit = DEFAULT_MAX_INVALID if max_invalid is None else parse_fraction(max_invalid)
                checked = _checked_list(file, algorithm, list_format, strict, limit)
                batches = _list_contents(file, algorithm, checked.list_format, note)
            elif from_image:
                batches = iter([_image_contents(values or [], algorithm, note)])
            else:
                batches = iter([_hash_contents(values or [], algorithm, note)])
            for batch in batches:
                try:
                    entries = bank_writer.add(bank, [content for _, content in batch], by=actor)
                except BankError as exc:
                    if not added:
                        raise
                    raise BankError(f"{exc}; the {added} contents added before stay") from None
                if writer is None:
                    fmt = choose_format(output_format, None)
                    writer = open_writer(fmt, ADDED_COLUMNS, table_title=f"added to {bank}")
                for (source, _), entry in zip(batch, entries, strict=True):
                    writer.write(_added_record(entry, source))
                added += len(entries)
            if not added:
                raise BankError(f"{file}: no hashes to add")
    finally:
        if writer is not None:
            writer.close()


def _added_record(entry: BankEntry, source: str | None) -> dict[str, Any]:
    return {"id": entry.id, "signals": dict(entry.signals), "note": entry.note, "source": source}


Contents = list[tuple[str | None, NewContent]]
"""Contents to add, each with where it came from (a list line, an image) for the output."""


def _hash_contents(values: list[str], algorithm: str, note: str | None) -> Contents:
    """Each argument checked as a list line is, naming the argument that fails."""
    contents: Contents = []
    for text in values:
        name, separator, digits = text.partition(":")
        signal = {name.strip(): digits.strip()} if separator else {algorithm: text.strip()}
        contents.append((None, NewContent(validated_signals(signal, repr(text)), note=note)))
    return contents


def _image_contents(paths: list[str], algorithm: str, note: str | None) -> Contents:
    """Every image hashed before anything is added: one unreadable or too flat to match
    (PDQ quality under its floor) adds nothing."""
    contents: Contents = []
    refused = []
    for path in paths:
        try:
            result = hash_image(Path(path), algorithm)
        except HashmatchError as exc:
            refused.append(str(exc))
            continue
        flat = sorted(low_quality_algorithms(result))
        if flat:
            floor = get_algorithm(flat[0]).quality_floor
            refused.append(
                f"{path}: too flat to match reliably ({flat[0].upper()} quality"
                f" {result.pdq_quality}, under {floor})"
            )
            continue
        signals = {name: value.hex for name, value in result.hashes.items()}
        contents.append((path, NewContent(signals, note=note)))
    for reason in refused[:-1]:
        print_error(reason)
    if refused:
        raise BankError(f"{refused[-1]}; {len(refused)} of {len(paths)} refused, nothing added")
    return contents


def _checked_list(
    path: Path, algorithm: str, list_format: str, strict: bool, max_invalid: float
) -> ListStats:
    """Read the whole list once under the list policy (``--strict``: the first bad line
    fails it; otherwise too many bad lines do) before anything is added; the bad lines it
    skips are reported on stderr."""
    reader = HashListReader(
        path, algorithm=algorithm, list_format=list_format, strict=strict, max_invalid=max_invalid
    )
    for _ in reader.chunks():
        pass
    stats = reader.stats
    console = stderr_console()
    for problem in stats.problems:
        console.print(f"skipped {problem}", markup=False)
    if stats.rejected > len(stats.problems):
        console.print(f"skipped {stats.rejected} bad lines in all", markup=False)
    return stats


def _list_contents(
    path: Path, algorithm: str, list_format: str, note: str | None
) -> Iterator[Contents]:
    """The list's valid rows as contents, :data:`ADD_CHUNK` at a time: one content per row,
    with every hash the row gives; its label as the note, its id and extra columns as
    metadata."""
    reader = HashListReader(path, algorithm=algorithm, list_format=list_format, max_invalid=1.0)
    pending: Contents = []
    for chunk in reader.chunks():
        pending.extend(_row_contents(chunk, reader.stats.source, note))
        while len(pending) >= ADD_CHUNK:
            yield pending[:ADD_CHUNK]
            pending = pending[ADD_CHUNK:]
    if pending:
        yield pending


def _row_contents(chunk: ValidChunk, source: str, note: str | None) -> Contents:
    batch = chunk.batch
    signals: dict[int, dict[str, str]] = {}
    first: dict[int, int] = {}
    for name, positions in chunk.positions.items():
        for code, position in zip(chunk.codes[name], positions, strict=True):
            line = batch.lines[position]
            signals.setdefault(line, {})[name] = code.tobytes().hex()
            first.setdefault(line, position)
    contents: Contents = []
    for line in sorted(signals):
        position = first[line]
        metadata = dict(batch.extras[position] or {})
        if batch.entry_ids[position]:
            metadata["source_id"] = str(batch.entry_ids[position])
        content = NewContent(
            signals[line], note=batch.labels[position] or note, metadata=metadata or None
        )
        contents.append((f"{source}:{line}", content))
    return contents


# -- disable, enable, delete ----------------------------------------------------------------

IdsArgument = Annotated[list[int], typer.Argument(help="Content ids.")]


@app.command("disable")
def disable_command(
    bank: BankArgument,
    ids: IdsArgument,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            help="Enabled again from this time (ISO 8601, UTC unless it says; or Unix seconds).",
        ),
    ] = None,
    index: IndexOption = None,
    banks: BanksOption = None,
    by: ByOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """Stop contents matching (for good, or --until a time)."""
    value = DISABLED if until is None else _parse_until(until, time.time())
    _set_contents(bank, ids, value, index, banks, by, output_format)


@app.command("enable")
def enable_command(
    bank: BankArgument,
    ids: IdsArgument,
    index: IndexOption = None,
    banks: BanksOption = None,
    by: ByOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """Let disabled contents match again."""
    _set_contents(bank, ids, ENABLED, index, banks, by, output_format)


def _set_contents(
    bank: str,
    ids: list[int],
    value: int,
    index: Path | None,
    banks: Path | None,
    by: str | None,
    output_format: OutputFormat | None,
) -> None:
    chosen = list(dict.fromkeys(ids))
    with _failures(), _writing(index, banks) as writer:
        for content in chosen:  # every id checked before anything changes
            writer.directory.content(bank, content)
        changed = [writer.set_disabled_until(bank, c, value, by=_actor(by)) for c in chosen]
    now = time.time()
    _print_records(output_format, CONTENT_COLUMNS, [_content_record(e, now) for e in changed])


def _parse_until(text: str, now: float) -> int:
    try:
        moment = float(text)
    except ValueError:
        iso = text.strip()
        if iso[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not take "Z"
            iso = iso[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(iso)
        except ValueError:
            raise typer.BadParameter(
                f"{text!r}: expected an ISO 8601 time (2030-01-31T12:00Z) or Unix seconds",
                param_hint="'--until'",
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        moment = parsed.timestamp()
    if not math.isfinite(moment) or moment <= now:
        raise typer.BadParameter(f"{text!r} is not in the future", param_hint="'--until'")
    return math.ceil(moment)


@app.command("delete")
def delete_command(
    bank: BankArgument,
    ids: Annotated[list[int] | None, typer.Argument(help="Content ids.")] = None,
    whole_bank: Annotated[
        bool, typer.Option("--bank", help="Drop the whole bank and its contents.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm dropping a bank.")] = False,
    index: IndexOption = None,
    banks: BanksOption = None,
    by: ByOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """Delete contents (gone for good: their ids are never reused), or --bank the whole bank."""
    if whole_bank == bool(ids):
        raise typer.BadParameter("give content ids or --bank (one of them)", param_hint="IDS")
    with _failures(), _writing(index, banks) as writer:
        if whole_bank:
            contents = writer.directory.bank(bank).live_entries
            if not yes:
                print_error(f"dropping {bank} deletes its {contents} contents: add --yes")
                raise typer.Exit(ExitCode.FAILED)
            writer.drop_bank(bank, by=_actor(by))
            records: list[dict[str, Any]] = [{"bank": bank, "dropped": True, "contents": contents}]
            columns = ["bank", "dropped", "contents"]
        else:
            chosen = list(dict.fromkeys(ids or []))
            for content in chosen:  # every id checked before anything changes
                writer.directory.content(bank, content)
            records = [{"id": c, "deleted": writer.delete(bank, c, by=_actor(by))} for c in chosen]
            columns = ["id", "deleted"]
    _print_records(output_format, columns, records)


# -- exclusions -----------------------------------------------------------------------------


@app.command("exclude")
def exclude_command(
    bank: BankArgument,
    hashes: Annotated[
        list[str] | None,
        typer.Option("--hash", help="[ALGORITHM:]HEX never to match (repeatable)."),
    ] = None,
    entries: Annotated[
        list[str] | None,
        typer.Option("--entry", help="LIST:ENTRY_ID, a list entry never to match (repeatable)."),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Lift these exclusions instead.")
    ] = False,
    index: IndexOption = None,
    banks: BanksOption = None,
    by: ByOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """Record confirmed false positives: hashes or list entries (of any list the builds
    take) that stop matching, live and in the next build."""
    keys = [_hash_key(text) for text in hashes or []] + [_entry_key(t) for t in entries or []]
    if not keys:
        raise typer.BadParameter("give --hash or --entry", param_hint="'--hash' / '--entry'")
    with _failures(), _writing(index, banks) as writer:
        done = writer.exclude(bank, keys, by=_actor(by), undo=remove)
    _print_records(
        output_format,
        ["kind", "key", "excluded"],
        [{"kind": kind, "key": f"{a}:{b}", "excluded": not remove} for kind, a, b in done],
    )


def _hash_key(text: str) -> ExclusionKey:
    name, separator, digits = text.partition(":")
    signal = {name.strip(): digits.strip()} if separator else {DEFAULT_ALGORITHMS[0]: text.strip()}
    try:
        algorithm, value = next(iter(validated_signals(signal, repr(text)).items()))
    except BankError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--hash'") from None
    return ("hash", algorithm, value)


def _entry_key(text: str) -> ExclusionKey:
    list_name, separator, entry = text.partition(":")
    if not (separator and list_name and entry):
        raise typer.BadParameter(f"{text!r}: expected LIST:ENTRY_ID", param_hint="'--entry'")
    return ("entry", list_name, entry)


# -- the readers ----------------------------------------------------------------------------


@app.command("list")
def list_command(
    bank: Annotated[str | None, typer.Argument(help="A bank: list its contents.")] = None,
    everything: Annotated[bool, typer.Option("--all", help="Include deleted contents.")] = False,
    index: IndexOption = None,
    banks: BanksOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """List the banks, or one bank's contents (takes no lock: works while a server writes)."""
    with _failures():
        directory = BankDirectory(_existing_directory(index, banks))
        with _own_problem_reports():
            directory.refresh()
        if bank is None:
            _print_records(output_format, BANK_COLUMNS, map(_bank_record, directory.existing()))
        else:
            state = directory.bank(bank)
            now = time.time()
            records = [
                _content_record(entry, now)
                for _, entry in sorted(state.entries.items())
                if everything or not entry.deleted
            ]
            _print_records(output_format, CONTENT_COLUMNS, records, title=f"bank {bank}")
    _exit_for_problems(directory.problems, directory.problem_count)


@app.command("log")
def log_command(
    bank: BankArgument,
    after: Annotated[int, typer.Option("--after", min=0, help="Only records after this seq.")] = 0,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most this many records.")
    ] = None,
    index: IndexOption = None,
    banks: BanksOption = None,
    output_format: OutputFormatOption = None,
) -> None:
    """A bank's audit trail, record by record (takes no lock); exit 1 if lines are unreadable."""
    with _failures():
        check_bank_name(bank)
        path = _existing_directory(index, banks) / f"{bank}{LOG_SUFFIX}"
        if not path.is_file():
            raise BankError(f"bank '{bank}' not found ({path} does not exist)", 404)
        with _own_problem_reports():
            read = read_tail(LogRead(path))
    chosen = [record for record in read.records if record.seq > after][:limit]
    _print_records(
        output_format,
        LOG_COLUMNS,
        (
            {"seq": r.seq, "time": _iso(r.at), "by": r.by, "op": r.op, "fields": r.fields}
            for r in chosen
        ),
        title=f"log of {bank}",
    )
    _exit_for_problems(read.problems, len(read.problems))
