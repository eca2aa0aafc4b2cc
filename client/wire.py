"""What crosses the wire: a call's switches as query parameters, images as bytes, lookup
queries as JSON, and the service's answers back into the library's values.

Kept apart from the HTTP handling in :mod:`hashmatch.client` so each shape is stated once,
next to the route's in :mod:`hashmatch.service.native_routes`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypedDict, TypeVar, cast

from hashmatch.banks import NewContent
from hashmatch.banks.records import ENABLED
from hashmatch.errors import (
    ImageDecodeError,
    ImageError,
    ImageReadError,
    ImageTimeoutError,
    ImageTooLargeError,
    OptionError,
    UnsupportedImageError,
)
from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult
from hashmatch.index.results import Match, MatchResult

__all__ = [
    "BankContent",
    "BankInfo",
    "HashQuery",
    "ImageInput",
    "NewBankContent",
    "ServiceSwitches",
    "bank_content",
    "bank_info",
    "batch_results",
    "chunks",
    "content_json",
    "exclusions_json",
    "failed",
    "hash_result",
    "image_bytes",
    "image_error",
    "is_result",
    "lookup_answers",
    "new_ids",
    "query_json",
    "switch_params",
]

ImageInput = bytes | bytearray | memoryview | str | os.PathLike[str]
"""An image's bytes, or the path of a file holding them (a ``str`` is always a path)."""

HashQuery = Mapping[str, str | Hash]
"""One lookup: algorithm name -> hash (hex or :class:`~hashmatch.Hash`); a
:class:`~hashmatch.HashResult` is one."""


class ServiceSwitches(TypedDict, total=False):
    """The matching switches a server takes per call (:class:`~hashmatch.MatchOptions`'
    names); one not given is the server's default, which is the library's. Limits and time
    limits are the server's to set."""

    algorithms: str | Sequence[str] | None
    thresholds: Mapping[str, int] | None
    dihedral: bool
    trim_borders: bool
    recover: bool
    exact: bool
    with_hashes: bool
    """Return the computed hashes in ``MatchResult.hashes``."""


_SWITCHES = frozenset(ServiceSwitches.__annotations__)
_FLAGS = {
    "dihedral": "dihedral",
    "trim_borders": "trim_borders",
    "recover": "recover",
    "exact": "exact",
    "with_hashes": "hashes",
}
_IMAGE_ERRORS: dict[str, type[ImageError]] = {
    cls.kind: cls
    for cls in (
        ImageReadError,
        ImageDecodeError,
        ImageTooLargeError,
        UnsupportedImageError,
        ImageTimeoutError,
    )
}
"""The library's exception for each error kind the service reports for an image."""

T = TypeVar("T")


def switch_params(switches: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The query parameters for ``switches``; an unknown or mistyped one raises OptionError
    here, before anything is sent (a typo must not be silently ignored)."""
    unknown = set(switches) - _SWITCHES
    if unknown:
        known = ", ".join(sorted(_SWITCHES))
        raise OptionError(f"unknown matching option {sorted(unknown)[0]!r} (known: {known})")
    params: list[tuple[str, str]] = []
    algorithms = switches.get("algorithms")
    if algorithms:
        text = algorithms if isinstance(algorithms, str) else ",".join(algorithms)
        params.append(("algorithms", text))
    for name, distance in (switches.get("thresholds") or {}).items():
        if isinstance(distance, bool) or not isinstance(distance, int) or distance < 0:
            raise OptionError(f"threshold for {name} must be a whole number >= 0")
        params.append(("threshold", f"{name}:{distance}"))
    for name, parameter in _FLAGS.items():
        if name in switches:
            value = switches[name]
            if not isinstance(value, bool):
                raise OptionError(f"{name} must be True or False, got {value!r}")
            params.append((parameter, "true" if value else "false"))
    return params


def image_bytes(image: ImageInput) -> bytes:
    """The bytes to send; a path that cannot be read, or no bytes at all, raise the
    ImageError the library's loader would (so results and exceptions read the same)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        source = "<image>"
    elif isinstance(image, (str, os.PathLike)):
        source = os.fspath(image)
        try:
            with open(source, "rb") as file:
                data = file.read()
        except IsADirectoryError:
            raise ImageReadError(source, "is a directory") from None
        except OSError as exc:
            raise ImageReadError(source, (exc.strerror or str(exc)).lower()) from None
    else:
        raise OptionError(f"an image must be bytes or a path, got {type(image).__name__}")
    if not data:
        raise UnsupportedImageError(source, "empty (0 bytes)")
    return data


def failed(exc: ImageError) -> MatchResult:
    """The result of an image that never reached the server, as the library reports it."""
    return MatchResult(status="error", error_kind=exc.kind, error_message=exc.reason, exception=exc)


def image_error(body: Any, source: str) -> ImageError | None:
    """The library's exception for a failed image's answer (``error: {kind, message}``), or
    None when the answer is not one (a refused request, or a kind only a server has:
    ``crashed``, ``internal``), which the caller reports as a failed call."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or error.get("kind") not in _IMAGE_ERRORS:
        return None
    return _IMAGE_ERRORS[error["kind"]](source, str(error.get("message")))


def is_result(body: Any) -> bool:
    """Whether a 4xx body is a failed image's MatchResult rather than a refused request."""
    return isinstance(body, dict) and body.get("status") == "error"


def chunks(items: Sequence[T], size: int) -> Iterator[tuple[int, Sequence[T]]]:
    """``items`` in runs of at most ``size``, each with its first item's position."""
    for start in range(0, len(items), size):
        yield start, items[start : start + size]


def query_json(query: HashQuery) -> dict[str, str]:
    """One ``/v1/lookup`` query: algorithm -> hex."""
    if not isinstance(query, Mapping):
        raise OptionError(
            f"a lookup query must map algorithms to hashes, got {type(query).__name__}"
        )
    return {
        name: value.hex if isinstance(value, Hash) else str(value) for name, value in query.items()
    }


def lookup_answers(body: Any) -> list[list[Match]]:
    return [[Match.from_json(item) for item in answer["matches"]] for answer in body["results"]]


def batch_results(body: Any) -> list[MatchResult]:
    return [MatchResult.from_json(item) for item in body["results"]]


def hash_result(body: Any) -> HashResult:
    variants = {
        name: {variant: Hash.from_hex(name, text) for variant, text in by_variant.items()}
        for name, by_variant in (body.get("variants") or {}).items()
    }
    return HashResult(
        hashes={name: Hash.from_hex(name, text) for name, text in body["hashes"].items()},
        width=int(body["width"]),
        height=int(body["height"]),
        pdq_quality=body.get("quality"),
        variants=variants,
    )


# --- banks (the shapes of hashmatch.service.bank_routes) ----------------------------------

NewBankContent = HashQuery | NewContent
"""A content to add: its hashes (``{"pdq": hex}``, a :class:`~hashmatch.HashResult`), or a
:class:`~hashmatch.banks.NewContent` with its note, metadata, URI and state."""


class BankInfo(TypedDict):
    """A bank as ``/v1/banks`` describes it."""

    name: str
    matching_enabled_ratio: float
    contents: int
    exclusions: int
    records: int
    created_at: float | None
    last_record_at: float | None
    unfolded_records: int | None
    """Its records the served version has not folded in (matched from the overlay)."""
    seconds_since_fold: float | None
    """Since the served version's build read it (None: no build has)."""


class BankContent(TypedDict):
    """One content of a bank, as ``/v1/banks/NAME/contents`` lists it."""

    id: int
    disable_until_ts: int
    added_at: float
    added_by: str | None
    note: str | None
    metadata: dict[str, Any] | None
    uri: str | None
    signals: dict[str, str]


def content_json(item: NewBankContent) -> dict[str, Any]:
    """One item of ``POST /v1/banks/NAME/contents``."""
    if isinstance(item, NewContent):
        body: dict[str, Any] = {"signals": query_json(item.signals)}
        for key in ("note", "metadata", "uri"):
            if getattr(item, key) is not None:
                body[key] = getattr(item, key)
        if item.disable_until_ts != ENABLED:
            body["disable_until_ts"] = item.disable_until_ts
        return body
    return {"signals": query_json(item)}


def exclusions_json(
    hashes: Sequence[tuple[str, str | Hash]], entries: Sequence[tuple[str, str]]
) -> dict[str, list[dict[str, str]]]:
    """The body of ``/v1/banks/NAME/exclusions``: ``(algorithm, hash)`` and ``(list,
    entry_id)`` pairs."""
    return {
        "hashes": [
            {"algorithm": algorithm, "hash": value.hex if isinstance(value, Hash) else str(value)}
            for algorithm, value in hashes
        ],
        "entries": [{"list": name, "entry_id": str(entry)} for name, entry in entries],
    }


def new_ids(body: Any) -> list[int]:
    ids = body["ids"]
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise ValueError("ids must be a list of whole numbers")
    return ids


def bank_info(body: Any) -> BankInfo:
    if not isinstance(body, dict) or not isinstance(body["name"], str):
        raise ValueError("not a bank")
    return cast(BankInfo, body)


def bank_content(body: Any) -> BankContent:
    if not isinstance(body, dict) or not isinstance(body["id"], int):
        raise ValueError("not a bank content")
    return cast(BankContent, body)
