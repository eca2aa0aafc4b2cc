"""``Client``: the library's matching calls, answered by a ``hashmatch serve`` over HTTP.

A program written against :class:`~hashmatch.Matcher` moves to a server by changing one line:
``match`` returns the same :class:`~hashmatch.MatchResult` (a bad image is a result with
status ``error``, never an exception), ``lookup`` the same :class:`~hashmatch.Match` list, and
``hash`` the same :class:`~hashmatch.HashResult` as :func:`~hashmatch.hash_image`, raising the
same :class:`~hashmatch.ImageError` subclasses. What only a service can do wrong raises
:class:`~hashmatch.errors.ServiceCallError` (``AuthenticationError`` for 401,
``ServiceUnavailableError`` for 503), naming the URL and never the token or a hash.

Matching calls are read-only on the server, so ``retries`` may safely repeat one after a 503
or a lost connection; bank changes (``create_bank``, ``add_to_bank`` ...: the writing
instance's ``/v1/banks`` routes) are sent once, as an add repeated would add twice. One client
keeps a pool of keep-alive connections; close it (or use it as a context manager) when done.
"""

from __future__ import annotations

import dataclasses
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import httpx

import hashmatch
from hashmatch.client.wire import (
    BankContent,
    BankInfo,
    HashQuery,
    ImageInput,
    NewBankContent,
    ServiceSwitches,
    bank_content,
    bank_info,
    batch_results,
    chunks,
    content_json,
    exclusions_json,
    failed,
    hash_result,
    image_bytes,
    image_error,
    is_result,
    lookup_answers,
    new_ids,
    query_json,
    switch_params,
)
from hashmatch.errors import (
    AuthenticationError,
    ImageError,
    OptionError,
    ServiceCallError,
    ServiceUnavailableError,
)
from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult
from hashmatch.index.results import Match, MatchResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "AuthenticationError",
    "BankContent",
    "BankInfo",
    "Client",
    "HashQuery",
    "ImageInput",
    "NewBankContent",
    "ServiceCallError",
    "ServiceSwitches",
    "ServiceUnavailableError",
]

_RAW = {"Content-Type": "application/octet-stream"}
_SHOWN_BODY = 300
"""Characters of a non-JSON error body quoted in an exception (a proxy's HTML page)."""

T = TypeVar("T")


class Client:
    """A connection to one ``hashmatch serve`` at ``base_url`` (``http://host:5100``).

    ``token`` is sent as ``Authorization: Bearer``; ``timeout`` bounds each request in
    seconds; ``retries`` repeats a call that got 503 or no answer, waiting 0.2 s, 0.4 s ...
    (at most 2 s) between tries; ``transport`` replaces the network (tests, proxies).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if not self.base_url.startswith(("http://", "https://")):
            raise OptionError(f"base_url must start with http:// or https://, got {base_url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise OptionError(f"retries must be a whole number 0-10, got {retries!r}")
        if not timeout > 0:
            raise OptionError(f"timeout must be seconds > 0, got {timeout!r}")
        headers = {"User-Agent": f"hashmatch-client/{hashmatch.__version__}"}
        if token is not None:
            token = token.strip()
            if not token or not all(33 <= ord(c) <= 126 for c in token):
                # checked here: a header error from the transport would quote the token
                raise OptionError("token must be printable ASCII without spaces")
            headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"  # never the token

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections; the client cannot be used afterwards."""
        self._http.close()

    def match(self, image: ImageInput, **switches: Unpack[ServiceSwitches]) -> MatchResult:
        """Match one image, as :meth:`Matcher.match` does: an image that cannot be read
        (here or by the server) is a result with status ``error`` and its kind."""
        params = switch_params(switches)
        try:
            data = image_bytes(image)
        except ImageError as exc:
            return failed(exc)
        response = self._call("POST", "/v1/match", params=params, content=data, headers=_RAW)
        body = _json_body(response)
        if response.status_code == 413 and not is_result(body):
            # the body is the image: over the server's upload limit, as the library's limit
            return MatchResult(
                status="error", error_kind="too_large", error_message=_message(response)
            )
        if response.status_code != 200 and not is_result(body):
            self._raise_for(response)
        return self._parsed(response, MatchResult.from_json, body)

    def match_batch(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 32,
        **switches: Unpack[ServiceSwitches],
    ) -> list[MatchResult]:
        """Match many images, in order, ``batch_size`` files a request (the server's
        ``--max-batch``, 32 by default, is the most it takes). Each result's ``source`` is the
        path given, or the position of bytes, as in :meth:`Matcher.match_many`."""
        _check_batch_size(batch_size)
        params = switch_params(switches)
        results: list[MatchResult] = []
        for start, chunk in chunks(images, batch_size):
            results.extend(self._match_chunk(start, chunk, params))
        return results

    def lookup(
        self,
        hashes: HashQuery,
        *,
        thresholds: Mapping[str, int] | None = None,
        dihedral: bool = False,
    ) -> list[Match]:
        """Every list entry within threshold of ``hashes``, nearest first, as
        :meth:`Matcher.lookup` finds them; ``dihedral`` also searches the hashes' rotations
        and is off by default, as ``/v1/lookup`` has it (the library's is on)."""
        (found,) = self.lookup_many([hashes], thresholds=thresholds, dihedral=dihedral)
        return found

    def lookup_many(
        self,
        queries: Sequence[HashQuery],
        *,
        thresholds: Mapping[str, int] | None = None,
        dihedral: bool = False,
        batch_size: int = 1000,
    ) -> list[list[Match]]:
        """:meth:`lookup` for each query, in order, ``batch_size`` queries a request (the
        server's ``--max-queries`` is the most it takes)."""
        _check_batch_size(batch_size)
        found: list[list[Match]] = []
        for _, chunk in chunks(queries, batch_size):
            request = {
                "queries": [query_json(query) for query in chunk],
                "thresholds": None if thresholds is None else dict(thresholds),
                "dihedral": dihedral,
            }
            response = self._call("POST", "/v1/lookup", json=request)
            body = self._checked_json(response)
            answers = self._parsed(response, lookup_answers, body)
            if len(answers) != len(chunk):
                raise self._unexpected(response, f"{len(answers)} answers to {len(chunk)}")
            found.extend(answers)
        return found

    def hash(
        self,
        image: ImageInput,
        algorithms: str | Sequence[str] | None = None,
        *,
        dihedral: bool = False,
    ) -> HashResult:
        """The image's hashes, as :func:`~hashmatch.hash_image` computes them (default
        algorithms: the served index's); an image that cannot be hashed raises the same
        :class:`~hashmatch.ImageError` subclass the library would."""
        path = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        params = switch_params({"algorithms": algorithms, "dihedral": dihedral})
        data = image_bytes(image)
        response = self._call("POST", "/v1/hash", params=params, content=data, headers=_RAW)
        body = _json_body(response)
        if response.status_code != 200:
            failure = image_error(body, path or "<image>")
            if failure is not None:
                raise failure
            self._raise_for(response)
        return self._parsed(response, hash_result, body)

    def index_info(self) -> dict[str, Any]:
        """The served version: ``/v1/index`` (build and load times, algorithms and their
        entries and thresholds, lists, the state of reload checks)."""
        response = self._call("GET", "/v1/index")
        body = self._checked_json(response)
        if not isinstance(body, dict):
            raise self._unexpected(response, "not a JSON object")
        return body

    def ready(self) -> bool:
        """Whether the server has an index loaded and fresh (``/readyz``); asked once, not
        retried. A server that does not answer raises: unreachable is not the same as
        not ready, and a caller deciding what to do should know which."""
        response = self._call("GET", "/readyz", retries=0)
        if response.status_code == 503:
            return False
        self._checked_json(response)
        return True

    # -- banks: the writing instance's /v1/banks (changes sent once, never retried) ----------

    def create_bank(self, name: str, *, matching_enabled_ratio: float = 1.0) -> BankInfo:
        """Create a bank (``UPPER_WITH_UNDERSCORE``); its contents match once added."""
        body = {"name": name, "matching_enabled_ratio": matching_enabled_ratio}
        response = self._call("POST", "/v1/banks", retries=0, json=body)
        return self._parsed(response, bank_info, self._written_json(response))

    def add_to_bank(self, name: str, contents: Sequence[NewBankContent]) -> list[int]:
        """Add contents (hashes, or :class:`~hashmatch.banks.NewContent`) in one durable
        append, all or nothing; their new content ids, in order. They match at once."""
        body = {"contents": [content_json(item) for item in contents]}
        response = self._call("POST", _bank_path(name, "contents"), retries=0, json=body)
        ids = self._parsed(response, new_ids, self._written_json(response))
        if len(ids) != len(body["contents"]):
            raise self._unexpected(response, f"{len(ids)} ids for {len(body['contents'])}")
        return ids

    def disable(self, name: str, content_id: int) -> BankContent:
        """Stop a content matching (until :meth:`enable`)."""
        return self._set_content(name, content_id, {"enabled": False})

    def enable(self, name: str, content_id: int) -> BankContent:
        return self._set_content(name, content_id, {"enabled": True})

    def delete_content(self, name: str, content_id: int) -> bool:
        """Delete a content; False when there was none to delete."""
        path = _bank_path(name, "contents", str(content_id))
        response = self._call("DELETE", path, retries=0)
        body = self._written_json(response)
        return self._parsed(response, lambda answer: bool(answer["deleted"]), body)

    def exclude(
        self,
        name: str,
        *,
        hashes: Sequence[tuple[str, str | Hash]] = (),
        entries: Sequence[tuple[str, str]] = (),
        undo: bool = False,
    ) -> None:
        """Record confirmed false positives in bank ``name``: no lookup matches these stored
        hashes (``(algorithm, hash)``) or list entries (``(list, entry_id)``) any more,
        whichever list holds them; ``undo`` lifts them."""
        body = exclusions_json(hashes, entries)
        method = "DELETE" if undo else "POST"
        response = self._call(method, _bank_path(name, "exclusions"), retries=0, json=body)
        self._written_json(response)

    def bank_contents(
        self, name: str, *, include_disabled: bool = False, page_size: int = 100
    ) -> Iterator[BankContent]:
        """Every content of bank ``name`` by id, ``page_size`` a request (the server takes
        at most 1000); disabled ones too with ``include_disabled``."""
        _check_batch_size(batch_size=page_size)
        after: int | None = 0
        path = _bank_path(name, "contents")
        while after is not None:
            params = {
                "after": str(after),
                "limit": str(page_size),
                "include_disabled": "true" if include_disabled else "false",
            }
            response = self._call("GET", path, params=params)
            body = self._checked_json(response)
            page = self._parsed(response, lambda answer: list(answer["contents"]), body)
            for item in page:
                yield self._parsed(response, bank_content, item)
            after = self._parsed(response, lambda answer: answer["next_after"], body)

    def _set_content(self, name: str, content_id: int, change: dict[str, Any]) -> BankContent:
        path = _bank_path(name, "contents", str(content_id))
        response = self._call("PATCH", path, retries=0, json=change)
        return self._parsed(response, bank_content, self._written_json(response))

    def _written_json(self, response: httpx.Response) -> Any:
        """The body of a change's answer (200, or 201 for what it created); else raises."""
        if response.status_code not in (200, 201):
            self._raise_for(response)
        body = _json_body(response)
        if body is None:
            raise self._unexpected(response, "not JSON")
        return body

    def _match_chunk(
        self, start: int, images: Sequence[ImageInput], params: list[tuple[str, str]]
    ) -> list[MatchResult]:
        """One batch request for the readable images among ``images``; the others' read
        errors take their places without being sent."""
        results: list[MatchResult | None] = []
        files: list[tuple[str, tuple[str, bytes, str]]] = []
        sources: list[str | int] = []
        for position, image in enumerate(images, start=start):
            source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else position
            try:
                data = image_bytes(image)
            except ImageError as exc:
                results.append(dataclasses.replace(failed(exc), source=source))
                continue
            name = os.path.basename(source) if isinstance(source, str) else f"image-{source}"
            files.append(("file", (name, data, "application/octet-stream")))
            sources.append(source)
            results.append(None)
        answered: Iterator[MatchResult] = iter(())
        if files:
            response = self._call("POST", "/v1/match/batch", params=params, files=files)
            body = self._checked_json(response)
            batch = self._parsed(response, batch_results, body)
            if len(batch) != len(files):
                raise self._unexpected(response, f"{len(batch)} results for {len(files)} files")
            answered = (
                dataclasses.replace(result, source=source)
                for result, source in zip(batch, sources, strict=True)
            )
        return [result if result is not None else next(answered) for result in results]

    def _call(
        self, method: str, path: str, *, retries: int | None = None, **request: Any
    ) -> httpx.Response:
        """The server's answer, after up to ``retries`` more tries on 503 or no answer; no
        answer at all raises ServiceCallError naming the URL (never httpx's exception)."""
        allowed = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **request)
            except httpx.RequestError as exc:
                retryable = isinstance(exc, httpx.TransportError)
                if not retryable or attempt >= allowed:
                    raise ServiceCallError(self._where(method, path), None, _reason(exc)) from None
            else:
                if response.status_code != 503 or attempt >= allowed:
                    return response
            attempt += 1
            time.sleep(min(0.2 * 2 ** (attempt - 1), 2.0))

    def _where(self, method: str, path: str) -> str:
        return f"{method} {self.base_url}{path}"

    def _checked_json(self, response: httpx.Response) -> Any:
        """The body of a 200 answer as JSON; any other answer raises."""
        if response.status_code != 200:
            self._raise_for(response)
        body = _json_body(response)
        if body is None:
            raise self._unexpected(response, "not JSON")
        return body

    def _raise_for(self, response: httpx.Response) -> NoReturn:
        """Raise the error a non-200 answer means, with the server's message."""
        status = response.status_code
        error = {401: AuthenticationError, 503: ServiceUnavailableError}.get(
            status, ServiceCallError
        )
        where = self._where(response.request.method, response.request.url.path)
        raise error(where, status, _message(response))

    def _unexpected(self, response: httpx.Response, what: str) -> ServiceCallError:
        where = self._where(response.request.method, response.request.url.path)
        return ServiceCallError(where, response.status_code, f"unexpected answer: {what}")

    def _parsed(self, response: httpx.Response, parse: Callable[[Any], T], body: Any) -> T:
        """``parse(body)``, an answer this client cannot read raising ServiceCallError (an
        unknown status or algorithm: a client must not guess what it means)."""
        try:
            return parse(body)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._unexpected(response, str(exc)) from None


def _bank_path(name: str, *parts: str) -> str:
    """``/v1/banks/NAME/...``, each part quoted (a name is never a path)."""
    return "/".join(["/v1/banks", *(urllib.parse.quote(p, safe="") for p in (name, *parts))])


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def _json_body(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON (a 401's text, a proxy's page)."""
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: httpx.Response) -> str:
    """The server's ``message``, or the start of a body that is not ours (a proxy's page)."""
    body = _json_body(response)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return " ".join(response.text.split())[:_SHOWN_BODY] or response.reason_phrase


def _reason(exc: httpx.RequestError) -> str:
    """Why no answer came, in words; httpx's own message only where it comes from the
    network or the server (a local protocol error may quote a header, so the token)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"
    if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
        return f"connection lost: {exc}"
    return f"the request failed ({type(exc).__name__})"
