"""HMA 1.1.x's curation routes (``/c/...``) over the live banks: the same paths, status codes,
messages and shapes, so an HMA client curates hashmatch's banks as it curates HMA's.

A bank is a bank of the served bank directory (:mod:`hashmatch.banks`), never one of the
index's built lists; what is added matches on the next lookup. Changes go through the
instance's :class:`~hashmatch.banks.BankWriter` (403 on an instance that only reads the
banks), recorded with the caller's token name; reads catch up with the logs first, so a read
after another instance's write sees it. Where HMA and the banks differ:

- ``POST /c/banks`` honours ``"enabled": false`` (ratio 0), which HMA 1.1.7 ignores;
- a bank cannot be renamed (``PUT`` with another ``name``: 400), nor a content's note changed;
- a content added from ``?url=`` keeps the URL as its ``original_media_uri``.

Bodies are read as HMA reads them: the bank routes validate a pydantic model (422 with
pydantic's error list, whatever the body), the others want JSON (415, 400).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hashmatch.banks import BankDirectory, BankEntry, BankState, NewContent
from hashmatch.errors import BankError
from hashmatch.service.bodies import CONTENT_TYPES, hma_json_body, hma_upload, request_media_type
from hashmatch.service.fetch import check_content_type, fetch_url, url_content_type
from hashmatch.service.hma_routes import upload_hashes
from hashmatch.service.hma_signals import (
    HMA_SIGNAL_TYPES,
    InvalidSignal,
    signal_algorithm,
    validated_signal,
)
from hashmatch.service.state import ServiceError, ServiceState, service_state

__all__ = ["router"]

router = APIRouter(prefix="/c", tags=["hma-curation"])

RENAME_REFUSED = "renaming a bank is not supported; create a new bank"
NOTE_REFUSED = "changing a content's note is not supported"

_SIGNAL_TYPE_NAMES = {algorithm: name for name, algorithm in HMA_SIGNAL_TYPES.items()}
_METADATA_KEYS = ("content_id", "content_uri", "json")
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")

Result = TypeVar("Result")
Model = TypeVar("Model", bound=BaseModel)


class BankCreateRequest(BaseModel):
    name: str
    enabled_ratio: float | None = None
    enabled: bool | None = None


class BankUpdateRequest(BaseModel):
    name: str | None = None
    enabled_ratio: float | None = None
    enabled: bool | None = None


class BankedContentMetadata(BaseModel):
    """What a client may keep with a content (HMA's names; any other key is refused)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    content_id: str | None = None
    content_uri: str | None = None
    json_data: dict[str, Any] | None = Field(None, alias="json")


def _json_body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True)
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


_UPLOAD_BODY = {
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "description": "One file, its field name the content type; or ?url=.",
                    "properties": {
                        "photo": {"type": "string", "format": "binary"},
                        "video": {"type": "string", "format": "binary"},
                        "metadata": {"type": "string", "description": "JSON: content_id, ..."},
                        "note": {"type": "string"},
                    },
                }
            }
        },
    }
}

IncludeSignals = Annotated[str | None, Query(description="true: the content's signals too.")]
Url = Annotated[str | None, Query(description="Content to fetch and add (else an upload).")]
ContentType = Annotated[str | None, Query(description="photo or video (else guessed).")]
Types = Annotated[str | None, Query(description="Comma-separated signal types to compute.")]


# --- reading and writing the banks ---------------------------------------------------------


@contextmanager
def _bank_answers() -> Iterator[None]:
    """A refused bank call as its HTTP answer."""
    try:
        yield
    except BankError as exc:
        raise ServiceError(exc.status, str(exc)) from None


@contextmanager
def _current(state: ServiceState) -> Iterator[BankDirectory]:
    """The bank directory caught up with every writer, held still while it is read."""
    directory = state.banks.directory
    if directory.changed_since_refresh():
        state.banks.poll()
    with directory.locked(), _bank_answers():
        yield directory


async def _write(call: Callable[..., Result], *arguments: Any) -> Result:
    """A writer call (it fsyncs) off the event loop, its refusal as an HTTP answer."""
    with _bank_answers():
        return await run_in_threadpool(call, *arguments)


def _caller(request: Request) -> str | None:
    return getattr(request.state, "caller", None)


# --- bodies --------------------------------------------------------------------------------


async def _model_body(request: Request, model: type[Model]) -> Model | JSONResponse:
    """The body as HMA's model, or HMA's 422 with pydantic's errors (a body that is not a
    JSON object validates as nothing, as HMA's does)."""
    media_type = request_media_type(request)
    data: Any = None
    if media_type == "application/json" or media_type.endswith("+json"):
        try:
            data = json.loads(await request.body())
        except ValueError:
            data = None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        return JSONResponse(json.loads(exc.json()), status_code=422)


async def _form_fields(request: Request) -> dict[str, str]:
    """A form body's ``metadata`` and ``note`` (the form is parsed once per request)."""
    media_type = request_media_type(request)
    if media_type not in _FORM_TYPES:
        return {}
    fields: dict[str, str] = {}
    for key, value in (await request.form()).multi_items():
        if key in ("metadata", "note") and isinstance(value, str):
            fields.setdefault(key, value)
    return fields


def _metadata(text: str | None) -> dict[str, Any] | None:
    """A ``metadata`` field as it is kept: the keys given; HMA's 400 otherwise."""
    if text is None:
        return None
    try:
        checked = BankedContentMetadata.model_validate_json(text)
    except ValidationError as exc:
        raise ServiceError(400, f"Invalid metadata: {exc}") from None
    return checked.model_dump(by_alias=True, exclude_unset=True)


def _checked_signals(signals: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """``{signal type: hex}`` as HMA checks it: ``(by algorithm, by signal type)``."""
    if not signals:
        raise ServiceError(400, "No signals given")
    by_algorithm: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for name, value in signals.items():
        algorithm = signal_algorithm(name)
        if algorithm is None:
            raise ServiceError(400, f"No such signal type {name}")
        try:
            by_algorithm[algorithm] = by_name[name] = validated_signal(algorithm, value)
        except InvalidSignal as exc:
            raise ServiceError(400, f"Invalid {name} signal: {exc}") from None
    return by_algorithm, by_name


async def _add(
    state: ServiceState,
    request: Request,
    bank_name: str,
    signals: dict[str, Any],
    *,
    note: str | None = None,
    metadata: dict[str, Any] | None = None,
    uri: str | None = None,
) -> dict[str, Any]:
    """Add one content: HMA's ``{"id", "signals"}``, durable and matchable when answered."""
    by_algorithm, by_name = _checked_signals(signals)
    content = NewContent(by_algorithm, note=note, metadata=metadata, uri=uri)
    (entry,) = await _write(state.writer().add, bank_name, [content], _caller(request))
    return {"id": entry.id, "signals": by_name}


# --- answers -------------------------------------------------------------------------------


def _bank_json(bank: BankState) -> dict[str, Any]:
    return {"name": bank.name, "matching_enabled_ratio": bank.ratio}


def _user_metadata(entry: BankEntry) -> dict[str, Any] | None:
    if entry.metadata is None:
        return None
    return {key: entry.metadata.get(key) for key in _METADATA_KEYS}


def _content_json(bank: BankState, entry: BankEntry, include_signals: bool) -> dict[str, Any]:
    """``GET``'s shape: ``note``, ``metadata`` and ``signals`` only when there are."""
    answer: dict[str, Any] = {
        "bank": _bank_json(bank),
        "disable_until_ts": entry.disable_until_ts,
        "id": entry.id,
        "original_media_uri": entry.uri,
    }
    if entry.note is not None:
        answer["note"] = entry.note
    metadata = _user_metadata(entry)
    if metadata is not None:
        answer["metadata"] = {"collab": None, **metadata}
    if include_signals:
        answer["signals"] = {
            _SIGNAL_TYPE_NAMES.get(algorithm, algorithm): value
            for algorithm, value in entry.signals.items()
        }
    return answer


def _updated_content_json(bank: BankState, entry: BankEntry) -> dict[str, Any]:
    """``PUT``'s shape (HMA answers its stored record there)."""
    return {
        "bank": _bank_json(bank),
        "collab_metadata": {},
        "disable_until_ts": entry.disable_until_ts,
        "id": entry.id,
        "note": entry.note,
        "original_media_uri": entry.uri,
        "user_metadata": _user_metadata(entry),
    }


# --- banks ---------------------------------------------------------------------------------


@router.get("/banks")
async def banks_index(request: Request) -> list[dict[str, Any]]:
    """Every bank: ``[{"name", "matching_enabled_ratio"}]``."""
    with _current(service_state(request)) as directory:
        return [_bank_json(bank) for bank in directory.existing()]


@router.post(
    "/banks",
    status_code=201,
    response_model=None,
    openapi_extra=_json_body_schema(BankCreateRequest),
)
async def bank_create(request: Request) -> dict[str, Any] | JSONResponse:
    """Create a bank (201): ``{"name", "enabled_ratio"?, "enabled"?}``; ``enabled_ratio``
    sets its ratio, else ``enabled: false`` makes it 0; 403 ``Bank already exists``."""
    state = service_state(request)
    writer = state.writer()
    body = await _model_body(request, BankCreateRequest)
    if isinstance(body, JSONResponse):
        return body
    ratio = 1.0
    if body.enabled_ratio is not None:
        ratio = body.enabled_ratio
    elif body.enabled is not None:
        ratio = 1.0 if body.enabled else 0.0
    bank = await _write(writer.create_bank, body.name, ratio, _caller(request))
    return _bank_json(bank)


@router.get("/bank/{bank_name}")
async def bank_show(request: Request, bank_name: str) -> dict[str, Any]:
    """One bank: ``{"name", "matching_enabled_ratio"}``; 404 ``bank 'X' not found``."""
    with _current(service_state(request)) as directory:
        return _bank_json(directory.bank(bank_name))


@router.put(
    "/bank/{bank_name}", response_model=None, openapi_extra=_json_body_schema(BankUpdateRequest)
)
async def bank_update(request: Request, bank_name: str) -> dict[str, Any] | JSONResponse:
    """Change a bank's ratio: ``{"enabled_ratio"?, "enabled"?}`` (``enabled_ratio`` wins);
    404 ``Bank not found``. Renaming a bank is not supported: a ``name`` other than the
    bank's is refused (400); create a new bank and add the contents to it instead."""
    state = service_state(request)
    writer = state.writer()
    body = await _model_body(request, BankUpdateRequest)
    if isinstance(body, JSONResponse):
        return body
    with _current(state) as directory:
        bank = directory.banks.get(bank_name)
        if bank is None or not bank.exists:
            raise ServiceError(404, "Bank not found")
    if body.name is not None and body.name != bank_name:
        raise ServiceError(400, RENAME_REFUSED)
    ratio = None
    if body.enabled is not None:
        ratio = 1.0 if body.enabled else 0.0
    if body.enabled_ratio is not None:
        ratio = body.enabled_ratio
    if ratio is not None:
        bank = await _write(writer.update_bank, bank_name, ratio, _caller(request))
    return _bank_json(bank)


@router.delete("/bank/{bank_name}")
async def bank_delete(request: Request, bank_name: str) -> dict[str, str]:
    """Delete a bank and its contents: ``{"message": "Done"}``, also when there was none."""
    writer = service_state(request).writer()
    await _write(writer.drop_bank, bank_name, _caller(request))
    return {"message": "Done"}


# --- contents ------------------------------------------------------------------------------


@router.post("/bank/{bank_name}/signal")
async def bank_add_signals(request: Request, bank_name: str) -> dict[str, Any]:
    """Add a content by its hashes: ``{"pdq": "<hex>", "note"?}`` → ``{"id", "signals"}``;
    it matches from the next lookup."""
    state = service_state(request)
    state.writer()
    body = await hma_json_body(request)
    with _current(state) as directory:
        directory.bank(bank_name)
    if not body:
        raise ServiceError(400, "No signals given")
    if not isinstance(body, dict):
        raise ServiceError(400, "Request input was not a dict")
    note = body.pop("note", None)
    if note is not None and not isinstance(note, str):
        raise ServiceError(400, "note must be a string")
    return await _add(state, request, bank_name, body, note=note)


@router.post("/bank/{bank_name}/content", openapi_extra=_UPLOAD_BODY)
async def bank_add_content(
    request: Request,
    bank_name: str,
    url: Url = None,
    content_type: ContentType = None,
    types: Types = None,
) -> dict[str, Any]:
    """Add a content by its file: one multipart file (field ``photo`` or ``video``) or
    ``?url=``, hashed as ``/h/hash`` hashes it, with optional form fields ``metadata``
    (JSON ``{"content_id"?, "content_uri"?, "json"?}``) and ``note``: ``{"id", "signals"}``;
    400 ``Invalid pdq signal: invalid PDQ hash`` for a photo too flat to match."""
    state = service_state(request)
    state.writer()
    with _current(state) as directory:
        directory.bank(bank_name)
    if url:
        check_content_type(content_type)
        fields = await _form_fields(request)
        metadata = _metadata(fields.get("metadata"))
        fetched = await fetch_url(state.config, url)
        kind, upload = url_content_type(content_type, fetched.media_type), fetched.upload
    else:
        media_type = request_media_type(request)
        if media_type != "multipart/form-data":
            raise ServiceError(400, "Neither `url` nor multipart file upload was received")
        kind, upload = await hma_upload(request)
        fields = await _form_fields(request)
        metadata = _metadata(fields.get("metadata"))
    hashes = await upload_hashes(state, kind, upload, types)
    note, uri = fields.get("note"), url or None
    return await _add(state, request, bank_name, hashes, note=note, metadata=metadata, uri=uri)


@router.get("/bank/{bank_name}/content/{content_id:int}")
async def content_show(
    request: Request, bank_name: str, content_id: int, include_signals: IncludeSignals = None
) -> dict[str, Any]:
    """One content: ``{"bank", "disable_until_ts", "id", "original_media_uri", "note"?,
    "metadata"?}``, and its ``signals`` with ``include_signals=true``; 404 once deleted."""
    with _current(service_state(request)) as directory:
        entry = directory.content(bank_name, content_id)
        wanted = (include_signals or "").lower() == "true"
        return _content_json(directory.bank(bank_name), entry, wanted)


@router.put("/bank/{bank_name}/content/{content_id:int}")
async def content_update(request: Request, bank_name: str, content_id: int) -> dict[str, Any]:
    """Disable or enable a content: ``{"disable_until_ts"?}`` (0 disabled, 1 enabled, else
    enabled from that Unix time, under five years ahead); answers the content as stored."""
    state = service_state(request)
    writer = state.writer()
    with _current(state) as directory:
        entry = directory.content(bank_name, content_id)
    body = await hma_json_body(request)
    if not isinstance(body, dict):
        raise ServiceError(400, "Request input was not a dict")
    if "note" in body and body["note"] != entry.note:
        raise ServiceError(400, NOTE_REFUSED)
    if "disable_until_ts" in body:
        entry = await _write(
            writer.set_disabled_until,
            bank_name,
            content_id,
            body["disable_until_ts"],
            _caller(request),
        )
    with _current(state) as directory:
        return _updated_content_json(directory.bank(bank_name), entry)


@router.delete("/bank/{bank_name}/content/{content_id:int}")
async def content_delete(request: Request, bank_name: str, content_id: int) -> dict[str, int]:
    """Delete a content: ``{"deleted": 1}`` (0 when there was none); it stops matching at
    once and is gone from ``GET``."""
    writer = service_state(request).writer()
    deleted = await _write(writer.delete, bank_name, content_id, _caller(request))
    return {"deleted": deleted}


# --- what HMA configures -------------------------------------------------------------------


@router.get("/signal_type")
async def signal_types(request: Request) -> list[dict[str, Any]]:
    """HMA's signal types, always enabled: ``[{"name": "pdq", "enabled_ratio": 1.0}, ...]``."""
    return [{"name": name, "enabled_ratio": 1.0} for name in HMA_SIGNAL_TYPES]


@router.get("/content_type")
async def content_types(request: Request) -> list[dict[str, Any]]:
    """HMA's content types: ``[{"name": "photo", "enabled": true}, ...]``."""
    return [{"name": name, "enabled": True} for name in CONTENT_TYPES]
