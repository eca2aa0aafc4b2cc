"""HMA 1.1.x's matching and hashing routes (``/m/...``, ``/h/hash``): the same paths,
parameters, status codes, messages and shapes, so an HMA client only changes its base URL.

How HMA's names map onto ours is :mod:`~hashmatch.service.hma_signals`. Responses are keyed
by bank or signal type names only (clients read every key as one); what hashmatch knows
beyond HMA is said by ``/v1``. ``/m/lookup`` samples managed banks as HMA does: a bank of the
bank directory whose ``matching_enabled_ratio`` is below 1 answers only when the request's
seeded coin flip (``random.Random(seed).random()``) falls under it, ``bypass_coinflip=true``
skips the flip, and a bank at ratio 0 never answers there; the index's other lists always
match, and ``/m/raw_lookup`` never samples. Signal lookups search the hash as given
(HMA does not try rotations); uploads and fetched URLs are matched as ``/v1/match`` matches
them (rotations, borders), answered in HMA's shape.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from hashmatch.batch import HashJob
from hashmatch.hashes import Hash
from hashmatch.index.matcher import Matcher
from hashmatch.index.results import Match
from hashmatch.registry import get_algorithm
from hashmatch.service.bodies import hma_json_body, hma_upload
from hashmatch.service.fetch import check_content_type, fetch_url, url_content_type
from hashmatch.service.hma_signals import (
    BankMatches,
    InvalidSignal,
    bank_filter,
    by_bank,
    known_algorithm,
    per_content,
    signal_algorithm,
    signal_or_400,
    status_names,
    upload_signal_types,
    validated_signal,
)
from hashmatch.service.matching import (
    error_status,
    hash_upload,
    match_options_from_query,
    match_upload,
)
from hashmatch.service.request_log import MATCH_COUNT_KEY
from hashmatch.service.state import ServiceError, ServiceState, service_state
from hashmatch.service.uploads import Upload

__all__ = ["router"]

router = APIRouter(tags=["hma"])

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "One file, its field name the content type.",
                    "properties": {
                        "photo": {"type": "string", "format": "binary"},
                        "video": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}

Signal = Annotated[str, Query(description="The hash, as hex.")]
SignalType = Annotated[str, Query(description="pdq, video_md5, or a hashmatch algorithm.")]
Banks = Annotated[str | None, Query(description="Comma-separated banks (lists) to report.")]
Types = Annotated[str | None, Query(description="Comma-separated signal types to compute.")]
ContentType = Annotated[str | None, Query(description="photo or video (else guessed).")]
Seed = Annotated[str | None, Query(description="Seeds the coin flip of sampled banks.")]
Bypass = Annotated[
    str | None, Query(description="true: skip the coin flip (banks at ratio 0 stay off).")
]


def _sample_banks(
    state: ServiceState,
    groups: Iterable[BankMatches],
    seed: str | None,
    bypass_coinflip: str | None,
) -> None:
    """HMA's per-bank sampling, in place: a managed bank (one of the bank directory) whose
    ratio ``r`` is below 1 keeps its matches only when ``random.Random(seed).random() < r``,
    one flip per request; ``bypass_coinflip=true`` keeps them unless ``r`` is 0."""
    banks = state.banks.directory.banks
    bypass = (bypass_coinflip or "").lower() == "true"
    coin: float | None = None
    for grouped in groups:
        for name in list(grouped):
            bank = banks.get(name)
            if bank is None or not bank.exists or bank.ratio >= 1:
                continue
            if coin is None:
                coin = random.Random(seed).random()
            if bank.ratio <= 0 or not (bypass or coin < bank.ratio):
                del grouped[name]


def _count(request: Request, grouped: Iterable[BankMatches]) -> None:
    total = sum(len(items) for banks in grouped for items in banks.values())
    setattr(request.state, MATCH_COUNT_KEY, total)


def _lookup_signal(state: ServiceState, signal: str, signal_type: str) -> list[Match]:
    """HMA's order: the signal type, the hash, then the index (503 while none is loaded)."""
    algorithm = known_algorithm(signal_type)
    hex_digits = signal_or_400(algorithm, signal)
    return state.matcher().lookup({algorithm: hex_digits}, dihedral=False)


@router.get("/m/raw_lookup")
async def raw_lookup(
    request: Request,
    signal: Signal,
    signal_type: SignalType,
    include_distance: Annotated[bool, Query(description="Return distances too.")] = False,
    banks: Banks = None,
) -> dict[str, Any]:
    """The content ids within threshold of a hash: ``{"matches": [id, ...]}``, or with
    ``include_distance`` ``[{"bank_content_id", "distance"}]``."""
    matches = _lookup_signal(service_state(request), signal, signal_type)
    found = per_content(matches, bank_filter(banks))
    setattr(request.state, MATCH_COUNT_KEY, len(found))
    if include_distance:
        return {
            "matches": [
                {"bank_content_id": f["bank_content_id"], "distance": f["distance"]} for f in found
            ]
        }
    return {"matches": [f["bank_content_id"] for f in found]}


@router.get("/m/lookup")
async def lookup_get(
    request: Request,
    signal: Annotated[str | None, Query(description="The hash, as hex.")] = None,
    signal_type: Annotated[str | None, Query(description="The hash's signal type.")] = None,
    url: Annotated[str | None, Query(description="Content to fetch and match.")] = None,
    content_type: ContentType = None,
    types: Types = None,
    banks: Banks = None,
    seed: Seed = None,
    bypass_coinflip: Bypass = None,
) -> dict[str, Any]:
    """Banks matching a hash: ``{"BANK": [{"bank_content_id", "distance"}]}``; or, with
    ``url``, the fetched content's ``{"pdq": {"BANK": [...]}}`` (only the inner level when
    ``signal_type`` is given)."""
    state = service_state(request)
    if url:
        check_content_type(content_type)
        fetched = await fetch_url(state.config, url)
        kind = url_content_type(content_type, fetched.media_type)
        by_type = await _lookup_upload(state, kind, fetched.upload, types, banks)
        _sample_banks(state, by_type.values(), seed, bypass_coinflip)
        _count(request, by_type.values())
        return by_type.get(signal_type, {}) if signal_type is not None else by_type
    if not signal or not signal_type:
        raise ServiceError(400, "Either url or both signal and signal_type are required")
    matches = _lookup_signal(state, signal, signal_type)
    grouped = by_bank(matches, bank_filter(banks))
    _sample_banks(state, [grouped], seed, bypass_coinflip)
    _count(request, [grouped])
    return grouped


@router.post("/m/lookup", openapi_extra=_UPLOAD_BODY)
async def lookup_post(
    request: Request,
    types: Types = None,
    banks: Banks = None,
    seed: Seed = None,
    bypass_coinflip: Bypass = None,
) -> dict[str, BankMatches]:
    """Match one uploaded file (field ``photo`` or ``video``): ``{"pdq": {"BANK": [...]}}``;
    400 ``invalid signal: invalid PDQ hash`` for a photo too flat to match (quality < 50)."""
    state = service_state(request)
    content_type, upload = await hma_upload(request)
    by_type = await _lookup_upload(state, content_type, upload, types, banks)
    _sample_banks(state, by_type.values(), seed, bypass_coinflip)
    _count(request, by_type.values())
    return by_type


async def _lookup_upload(
    state: ServiceState, content_type: str, upload: Upload, types: str | None, banks: str | None
) -> dict[str, BankMatches]:
    """An upload's matches by signal type then bank, every signal type asked for present."""
    signal_types = upload_signal_types(content_type, types)
    wanted = bank_filter(banks)
    matcher = state.matcher()
    if content_type == "video":
        digests = await _byte_hashes(upload.data, signal_types)
        return {
            name: by_bank(matcher.lookup({signal_types[name]: hex_digits}, dihedral=False), wanted)
            for name, hex_digits in digests.items()
        }
    algorithms = ",".join(dict.fromkeys(signal_types.values()))
    options = match_options_from_query(state.config, algorithms=algorithms)
    result = await match_upload(state, matcher, upload, options)
    if result.error_kind is not None:
        raise ServiceError(error_status(result.error_kind), result.error or "error")
    for algorithm in signal_types.values():
        floor = get_algorithm(algorithm).quality_floor
        if floor is not None and (result.quality is None or result.quality < floor):
            raise ServiceError(400, f"invalid signal: invalid {algorithm.upper()} hash")
    return {
        name: by_bank((m for m in result.matches if m.algorithm == algorithm), wanted)
        for name, algorithm in signal_types.items()
    }


async def _byte_hashes(data: bytes, signal_types: dict[str, str]) -> dict[str, str]:
    """Exact hashes of the bytes as sent (a video is never decoded); our exact algorithms
    are named as :mod:`hashlib` names them."""

    def digest() -> dict[str, str]:
        return {name: hashlib.new(alg, data).hexdigest() for name, alg in signal_types.items()}

    return await run_in_threadpool(digest) if len(data) > 1 << 20 else digest()


async def upload_hashes(
    state: ServiceState, content_type: str, upload: Upload, types: str | None
) -> dict[str, str]:
    """HMA's ``/h/hash`` answer: signal type -> hex, ``""`` under the quality floor."""
    signal_types = upload_signal_types(content_type, types)
    if content_type == "video":
        return await _byte_hashes(upload.data, signal_types)
    config = state.config
    job = HashJob(
        algorithms=tuple(dict.fromkeys(signal_types.values())),
        limits=config.limits,
        time_limit=config.time_limit,
    )
    outcome = await hash_upload(state, upload, job)
    hashed = outcome.result
    if hashed is None:
        if outcome.error_kind is not None:
            state.metrics.upload_errors.labels(outcome.error_kind).inc()
        raise ServiceError(error_status(outcome.error_kind), outcome.error or "error")
    answer = {}
    for name, algorithm in signal_types.items():
        floor = get_algorithm(algorithm).quality_floor
        quality = hashed.pdq_quality
        too_flat = floor is not None and (quality is None or quality < floor)
        answer[name] = "" if too_flat else hashed.hashes[algorithm].hex
    return answer


@router.get("/h/hash")
async def hash_url(
    request: Request,
    url: Annotated[str, Query(description="Content to fetch and hash.")],
    content_type: ContentType = None,
    types: Types = None,
) -> dict[str, str]:
    """Fetch ``url`` and hash it: ``{"pdq": "<hex>"}`` (``""`` when too flat to match)."""
    state = service_state(request)
    check_content_type(content_type)
    fetched = await fetch_url(state.config, url)
    kind = url_content_type(content_type, fetched.media_type)
    return await upload_hashes(state, kind, fetched.upload, types)


@router.post("/h/hash", openapi_extra=_UPLOAD_BODY)
async def hash_post(request: Request, types: Types = None) -> dict[str, str]:
    """Hash one uploaded file (field ``photo`` or ``video``): ``{"pdq": "<hex>"}``."""
    state = service_state(request)
    content_type, upload = await hma_upload(request)
    return await upload_hashes(state, content_type, upload, types)


@router.get("/m/index/status")
async def index_status(
    request: Request,
    signal_type: Annotated[str | None, Query(description="Only this signal type.")] = None,
) -> dict[str, dict[str, Any]]:
    """Per signal type: ``{"built_to": <build time, or -1 when empty>, "present", "size"}``
    (HMA's two, then the served index's other algorithms)."""
    state = service_state(request)
    if signal_type is not None and signal_algorithm(signal_type) is None:
        raise ServiceError(400, f"No such signal type '{signal_type}'")
    info = state.matcher().info()
    names = [signal_type] if signal_type is not None else status_names(info["algorithms"])
    built_to = _unix_time(info.get("created"))
    answer = {}
    for name in names:
        algorithm = signal_algorithm(name)
        size = int(info["algorithms"].get(algorithm, {}).get("entries", 0))
        answer[name] = {"built_to": built_to if size else -1, "present": True, "size": size}
    return answer


def _unix_time(created: object) -> int:
    """A manifest's ``created`` (``2026-01-02T03:04:05Z``) as Unix seconds; -1 if unknown."""
    if not isinstance(created, str):
        return -1
    try:
        moment = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return -1
    return int(moment.timestamp())


@router.post("/m/compare")
async def compare(request: Request) -> dict[str, list[Any]]:
    """Compare pairs of hashes: ``{"pdq": [h1, h2]}`` → ``{"pdq": [within threshold,
    {"distance": d}]}`` (exact types: ``[equal, {}]``). Needs no index: the threshold is
    the served index's, else the algorithm's default."""
    body = await hma_json_body(request)
    if not isinstance(body, dict):
        raise ServiceError(400, "Request input was not a dict")
    matcher = service_state(request).watch.matcher
    answer: dict[str, list[Any]] = {}
    for name, pair in body.items():
        if not isinstance(pair, list):
            raise ServiceError(400, f"Comparison hashes for {name} was not a list")
        if len(pair) != 2:
            raise ServiceError(400, "Comparison hash list length must be exactly 2")
        algorithm = known_algorithm(name)
        try:
            left, right = (validated_signal(algorithm, text) for text in pair)
        except InvalidSignal as exc:
            raise ServiceError(400, f"Invalid {name} hash: {exc}") from None
        if not get_algorithm(algorithm).needs_pixels:
            answer[name] = [left == right, {}]
            continue
        distance = Hash.from_hex(algorithm, left).distance(Hash.from_hex(algorithm, right))
        answer[name] = [distance <= _threshold(matcher, algorithm), {"distance": distance}]
    return answer


def _threshold(matcher: Matcher | None, algorithm: str) -> int:
    if matcher is not None and algorithm in matcher.algorithms:
        return matcher.threshold(algorithm)
    return get_algorithm(algorithm).default_threshold
