"""Where a client command calls and as whom, and how it reads a list call's pages
(services/client/connection.py), without a server."""

from __future__ import annotations

from pathlib import Path

import pytest

from medrelay.identity.v1 import identity_service_pb2 as ipb
from medrelay.services.client.connection import Connection, caller_paths, credentials
from medrelay.services.client.failures import Failure


class Pages:
    """ListOrganizations over `total` organisations, as the service pages them."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.asked: list[tuple[int, str, float]] = []

    def __call__(
        self, request: ipb.ListOrganizationsRequest, timeout: float
    ) -> ipb.ListOrganizationsResponse:
        self.asked.append((request.page_size, request.page_token, timeout))
        start = int(request.page_token or 0)
        end = min(start + request.page_size, self.total)
        return ipb.ListOrganizationsResponse(
            organizations=[ipb.Organization(id=f"org-{i}") for i in range(start, end)],
            next_page_token=str(end) if end < self.total else "",
        )


def connection() -> Connection:
    return Connection("identity", "127.0.0.1:7101", credentials(as_="admin/ops"), timeout=7.0)


def test_list_all_reads_every_page_with_the_deadline() -> None:
    pages = Pages(2500)
    found = connection().list_all(pages, ipb.ListOrganizationsRequest(), "organizations")
    assert [o.id for o in found] == [f"org-{i}" for i in range(2500)]
    assert pages.asked == [(1000, "", 7.0), (1000, "1000", 7.0), (1000, "2000", 7.0)]


def test_list_all_asks_for_no_more_than_the_limit() -> None:
    pages = Pages(2500)
    found = connection().list_all(
        pages, ipb.ListOrganizationsRequest(), "organizations", limit=1200
    )
    assert len(found) == 1200
    assert [size for size, _, _ in pages.asked] == [1000, 200]


def test_a_caller_names_its_files_in_the_pki_folder() -> None:
    paths = caller_paths(Path("pki"), "org/hopital-a/system/ehr")
    assert (paths.cert, paths.key, paths.ca) == (
        Path("pki/org/hopital-a/system/ehr.pem"),
        Path("pki/org/hopital-a/system/ehr.key"),
        Path("pki/ca.pem"),
    )
    assert caller_paths(Path("pki"), "admin/ops").cert == Path("pki/admin/ops.pem")


@pytest.mark.parametrize(
    "caller", ["../../etc/x", "org/hopital-a/system/../ehr", "org/A/system/ehr", "admin", ""]
)
def test_a_caller_that_is_not_an_identity_names_no_file(caller: str) -> None:
    with pytest.raises(Failure, match="expected org/<organisation>/system/<name> or admin/<name>"):
        caller_paths(Path("pki"), caller)
