"""Patient blind indexes from the keys service, as identity and consent get them."""

from __future__ import annotations

import pytest

from medrelay import validation
from medrelay.blind_index import KeysBlindIndex
from medrelay.errors import MedrelayError


async def test_no_two_identifiers_share_an_index(blind_indexer: KeysBlindIndex) -> None:
    # With a printable separator these two would be the same input.
    first = await blind_indexer.patient("urn:a|1", "2")
    second = await blind_indexer.patient("urn:a", "1|2")
    assert first != second
    assert await blind_indexer.patient("urn:a", "1|2") == second


@pytest.mark.parametrize(
    ("system", "value", "field"),
    [
        ("urn:oid:1.2.250.1.213.1.4.8", "1840\u200b575", "patient.value"),  # zero-width space
        ("urn:oid:1.2.250.1.213.1.4.8", " 1840575", "patient.value"),
        ("not a uri", "1840575", "patient.system"),
        ("urn:oid:1.2.250.1.213.1.4.8", "1" * 129, "patient.value"),
    ],
    ids=["invisible-character", "leading-space", "system-not-a-uri", "value-too-long"],
)
def test_identifiers_are_checked_alike_everywhere(system: str, value: str, field: str) -> None:
    with pytest.raises(MedrelayError) as caught:
        validation.patient_identifier(system, value, "patient")
    assert caught.value.metadata["field"] == field
    assert value.strip() not in caught.value.message
