"""Input checks match the whole value: a trailing newline is not a valid id, URI or UUID."""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pytest

from medrelay import settings, spiffe, validation
from medrelay.errors import MedrelayError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value", ["org\n", "org\r\n", "\norg", "org\n\n", "Org", "-org", "a" * 64])
def test_an_id_must_match_in_full(value: str) -> None:
    with pytest.raises(MedrelayError) as caught:
        validation.resource_id(value, "organization_id")
    assert caught.value.metadata["field"] == "organization_id"
    assert value not in caught.value.message


@pytest.mark.parametrize("value", ["org", "a", "0-a", "a" * 63])
def test_valid_ids_pass(value: str) -> None:
    assert validation.resource_id(value, "organization_id") == value


def test_uri_and_uuid_must_match_in_full() -> None:
    with pytest.raises(MedrelayError):
        validation.uri("urn:oid:1.2.3\n", "system")
    with pytest.raises(MedrelayError):
        validation.uuid_id("00000000-0000-4000-8000-000000000000\n", "membership_id")
    assert validation.uri("urn:oid:1.2.3", "system") == "urn:oid:1.2.3"


@pytest.mark.parametrize(
    "value",
    ["", "AB" * 32, "ab" * 31, "ab" * 32 + "a", "ab" * 32 + "\n", " " + "ab" * 31 + "a", "g" * 64],
)
def test_a_blind_index_is_exactly_what_keys_returns(value: str) -> None:
    with pytest.raises(MedrelayError) as caught:
        validation.blind_index(value, "patient_index")
    assert caught.value.metadata["field"] == "patient_index"


def test_an_hmac_sha256_in_hex_is_a_blind_index() -> None:
    index = hmac.new(b"k", b"urn:oid:1.2\x00123", hashlib.sha256).digest().hex()
    assert validation.blind_index(index, "patient_index") == index


def test_ids_and_certificate_names_follow_one_rule() -> None:
    assert validation.ID_PATTERN is spiffe.ID_PATTERN
    with pytest.raises(ValueError):
        spiffe.PeerIdentity.system("medrelay.local", "org", "ehr\n")


def test_a_listen_address_must_match_in_full() -> None:
    assert settings.address("127.0.0.1:7101") == "127.0.0.1:7101"
    with pytest.raises(ValueError):
        settings.address("127.0.0.1:7101\n")


@pytest.mark.parametrize(
    "folder", ["libs/medrelay", "services/identity", "services/cli.py", "services/devstack.py"]
)
def test_regexes_that_guard_input_use_fullmatch(folder: str) -> None:
    # `pattern.match` accepts a prefix, and `$` a trailing newline: guards use fullmatch.
    target = ROOT / folder
    files = [target] if target.is_file() else sorted(target.glob("*.py"))
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        if "_pb2" not in path.name
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\.match\(", line)
    ]
    assert offenders == []
