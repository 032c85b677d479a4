"""FHIR search plumbing: parameters, searchset Bundles and paging links.

Paging is by the services' opaque page tokens, passed through as `_page_token`. A searchset
never carries `total`: the services filter by what the caller may see, and a count would hint
at what it may not (as HAPI FHIR's consent interceptor suppresses Bundle.total).
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from .outcome import bad_request

DEFAULT_COUNT: Final = 50
MAX_COUNT: Final = 1000


def single(query: MultiMapping[str], name: str) -> str:
    """A search parameter given at most once; "" when absent."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise bad_request(f"search parameter {name}: give it once", name)
    return values[0] if values else ""


def page_size(query: MultiMapping[str]) -> int:
    """_count, 1 to 1000 (default 50)."""
    value = single(query, "_count")
    if not value:
        return DEFAULT_COUNT
    if not value.isdigit() or not 1 <= int(value) <= MAX_COUNT:
        raise bad_request(f"search parameter _count: expected 1 to {MAX_COUNT}", "_count")
    return int(value)


def refuse_unknown(query: MultiMapping[str], known: frozenset[str]) -> None:
    """A search parameter we do not implement is refused, not silently ignored (which would
    return more than the client asked for)."""
    for name in query:
        if name not in known and name not in {"_count", "_page_token", "_format"}:
            # FHIR strings are never empty: a parameter without a name has no expression.
            shown = name[:64]
            raise bad_request(
                f"search parameter {shown!r} is not supported here", *([shown] if shown else [])
            )


def page_links(request: web.Request, base: str, next_token: str) -> list[dict[str, str]]:
    """self, and next when the service has another page."""
    params = [(k, v) for k, v in request.query.items() if k != "_page_token"]
    self_url = f"{base}{request.path}"
    links = [
        {
            "relation": "self",
            "url": f"{self_url}?{urlencode(list(request.query.items()))}".rstrip("?"),
        }
    ]
    if next_token:
        links.append(
            {
                "relation": "next",
                "url": f"{self_url}?{urlencode([*params, ('_page_token', next_token)])}",
            }
        )
    return links


def searchset(
    resources: list[dict[str, Any]], links: list[dict[str, str]], base: str
) -> dict[str, Any]:
    """A searchset Bundle of matches, without total."""
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": [
            {
                "fullUrl": f"{base}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }
