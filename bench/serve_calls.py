"""What ``bench/serve.py`` asks each route, and how it knows a 200 answer is right.

Every call carries its own check, so a server that answers fast but wrong (a hit not found,
a known image not matched, a stale version) shows up as ``wrong`` instead of as speed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

import httpx
from load import Call  # bench/load.py
from serve_setup import Served  # bench/serve_setup.py


def found_in(body: bytes) -> list[bool]:
    """Per query, whether a raw_lookup or /v1/lookup answer found something."""
    answer = json.loads(body)
    if "results" in answer:
        return [bool(result["matches"]) for result in answer["results"]]
    return [bool(answer["matches"])]


def raw_lookup_calls(served: Served, stand_in: bool) -> list[Call]:
    """One query a call, hits and misses in turn; ``/v1/lookup`` with one query where
    ``stand_in`` (raw_lookup answers 404)."""
    calls = []
    for hit, miss in zip(served.hits, served.misses, strict=True):
        for code, expected in ((hit, [True]), (miss, [False])):
            right = lambda body, e=expected: found_in(body) == e  # noqa: E731
            if stand_in:
                body = json.dumps({"queries": [{"pdq": code}]}).encode()
                calls.append(Call("POST", "/v1/lookup", body, "application/json", right))
            else:
                target = "/m/raw_lookup?" + urlencode({"signal": code, "signal_type": "pdq"})
                calls.append(Call("GET", target, right=right))
    return calls


def lookup_batch_calls(served: Served, per_request: int = 100) -> list[Call]:
    """``/v1/lookup`` calls of ``per_request`` queries each, half hits and half misses."""
    calls, half = [], per_request // 2
    for start in range(0, len(served.hits) - half + 1, half):
        pairs = zip(
            served.hits[start : start + half], served.misses[start : start + half], strict=True
        )
        codes = [code for pair in pairs for code in pair]
        expected = [number % 2 == 0 for number in range(len(codes))]
        body = json.dumps({"queries": [{"pdq": code} for code in codes]}).encode()
        right = lambda body, e=expected: found_in(body) == e  # noqa: E731
        calls.append(Call("POST", "/v1/lookup", body, "application/json", right))
    return calls


def match_calls(paths: list[Path], known: dict[str, str], versions: set[str]) -> list[Call]:
    """/v1/match of each JPEG; the versions that answered are added to ``versions``."""

    def right(body: bytes, expected: str) -> bool:
        answer = json.loads(body)
        versions.add(answer["index_version"])
        return bool(answer["status"] == expected)

    def checker(expected: str) -> Callable[[bytes], bool]:
        return lambda body: right(body, expected)

    return [
        Call(
            "POST",
            "/v1/match",
            path.read_bytes(),
            "image/jpeg",
            checker("match" if str(path) in known else "no_match"),
        )
        for path in paths
    ]


def raw_lookup_missing(base_url: str, served: Served) -> bool:
    """Whether the server lacks ``/m/raw_lookup`` (it answers 404), so /v1/lookup stands in."""
    query = urlencode({"signal": served.hits[0], "signal_type": "pdq"})
    return httpx.get(f"{base_url}/m/raw_lookup?{query}", timeout=10).status_code == 404


def raw_lookup_route(stand_in: bool) -> tuple[str, str]:
    """The rows' label and the route template the request log names."""
    if stand_in:
        return "raw_lookup (404; POST /v1/lookup, 1 query, stands in)", "/v1/lookup"
    return "GET /m/raw_lookup", "/m/raw_lookup"
