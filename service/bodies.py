"""Getting images out of requests: a raw body, or the files of a multipart form.

The native API takes either (``image/*`` or ``application/octet-stream`` bodies, or
multipart files under any field name); HMA's routes take exactly one multipart file whose
field name is the content type, with HMA's own messages (:func:`hma_upload`).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from hashmatch.service.limits import BodyStalled, BodyTooLarge
from hashmatch.service.state import ServiceError
from hashmatch.service.uploads import Upload

__all__ = [
    "BAD_JSON",
    "CONTENT_TYPES",
    "NOT_JSON",
    "hma_json_body",
    "hma_upload",
    "image_uploads",
    "request_media_type",
    "multipart_files",
]

CONTENT_TYPES = ("photo", "video")
"""HMA's content types, which are also its upload field names."""

_RAW_TYPES = ("image/", "application/octet-stream")
_MAX_FIELDS = 100


def request_media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def multipart_files(request: Request, max_files: int) -> list[tuple[str, Upload]]:
    """(field name, upload) for every file of a multipart body, in order; 400 for a body
    that is not valid multipart, 413 past ``max_files`` files."""
    try:
        form = await request.form(max_files=max_files, max_fields=_MAX_FIELDS)
    except (ServiceError, BodyTooLarge, BodyStalled):
        raise
    except Exception as exc:  # the parser's errors (malformed boundaries, too many parts)
        # Starlette answers the parser's errors as HTTPException(400, detail)
        reason = str(exc.detail) if isinstance(exc, HTTPException) else str(exc)
        if reason.startswith("Too many files"):
            raise ServiceError(413, _at_most(max_files)) from None
        if reason.startswith("Too many fields"):
            raise ServiceError(413, f"at most {_MAX_FIELDS} form fields per request") from None
        raise ServiceError(400, f"malformed multipart body: {reason}") from None
    files: list[tuple[str, Upload]] = []
    try:
        for field, value in form.multi_items():
            if isinstance(value, UploadFile):
                data = await value.read()
                files.append((field, Upload(data, value.filename or field)))
    finally:
        await form.close()
    if len(files) > max_files:
        raise ServiceError(413, _at_most(max_files))
    return files


def _at_most(max_files: int) -> str:
    return f"at most {max_files} files per request"


async def image_uploads(request: Request, max_files: int = 1) -> list[Upload]:
    """The images a native route was sent: the raw body, or every multipart file."""
    media_type = request_media_type(request)
    if media_type.startswith("multipart/form-data"):
        files = [upload for _, upload in await multipart_files(request, max_files)]
        if not files:
            raise ServiceError(400, "the multipart body holds no complete file part")
        return files
    if media_type.startswith(_RAW_TYPES):
        data = await request.body()
        if not data:
            raise ServiceError(400, "the request body is empty: send the image's bytes")
        return [Upload(data)]
    shown = media_type or "none"
    raise ServiceError(
        415,
        f"unsupported Content-Type {shown!r}: send the image as image/*,"
        " application/octet-stream or a multipart/form-data file",
    )


async def hma_upload(request: Request) -> tuple[str, Upload]:
    """HMA's upload: exactly one multipart file, its field name the content type."""
    if not request_media_type(request).startswith("multipart/form-data"):
        raise ServiceError(400, "Missing multipart/form-data file upload")
    try:
        files = await multipart_files(request, max_files=1)
    except ServiceError as exc:
        if exc.status == 413:  # a second file: HMA's words and status
            raise ServiceError(400, "Only one file allowed per request") from None
        raise
    if not files:
        raise ServiceError(400, "Missing multipart/form-data file upload")
    field, upload = files[0]
    if field not in CONTENT_TYPES:
        raise ServiceError(400, f"no such content_type: '{field}'")
    return field, upload


NOT_JSON = (
    "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."
)
BAD_JSON = "The browser (or proxy) sent a request that this server could not understand."


async def hma_json_body(request: Request) -> Any:
    """A JSON body as HMA (Flask's ``request.json``) takes it: 415 for another content type,
    400 for JSON that does not parse, with Flask's messages."""
    kind = request_media_type(request)
    if kind != "application/json" and not kind.endswith("+json"):
        raise ServiceError(415, NOT_JSON)
    try:
        return json.loads(await request.body())
    except ValueError:
        raise ServiceError(400, BAD_JSON) from None
