"""medrelay.spiffe: identities format to one URI and parse back only from exactly that URI."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medrelay.spiffe import IdentityKind, PeerIdentity

TD = "medrelay.test"


@pytest.mark.parametrize(
    ("identity", "uri"),
    [
        (PeerIdentity.service(TD, "consent"), "spiffe://medrelay.test/service/consent"),
        (PeerIdentity.admin(TD, "alice"), "spiffe://medrelay.test/admin/alice"),
        (
            PeerIdentity.system(TD, "org-1", "ehr"),
            "spiffe://medrelay.test/org/org-1/system/ehr",
        ),
        (PeerIdentity.service("example", "a"), "spiffe://example/service/a"),
        (
            PeerIdentity.service("a-1.b-2.example", "9" * 63),
            f"spiffe://a-1.b-2.example/service/{'9' * 63}",
        ),
    ],
)
def test_format_and_parse_round_trip(identity: PeerIdentity, uri: str) -> None:
    assert identity.uri == uri
    assert str(identity) == uri
    assert PeerIdentity.parse(uri) == identity


def test_parsed_fields() -> None:
    identity = PeerIdentity.parse("spiffe://medrelay.test/org/org-1/system/ehr")
    assert identity.trust_domain == TD
    assert identity.kind is IdentityKind.SYSTEM
    assert identity.organization_id == "org-1"
    assert identity.name == "ehr"
    assert PeerIdentity.parse("spiffe://medrelay.test/admin/alice").organization_id is None


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("", "not a spiffe:// URI"),
        ("https://medrelay.test/service/consent", "not a spiffe:// URI"),
        ("SPIFFE://medrelay.test/service/consent", "not a spiffe:// URI"),
        (" spiffe://medrelay.test/service/consent", "not a spiffe:// URI"),
        ("spiffe://medrelay.test", "no path"),
        ("spiffe:///service/consent", "trust domain"),
        ("spiffe://Medrelay.test/service/consent", "trust domain"),
        ("spiffe://medrelay..test/service/consent", "trust domain"),
        ("spiffe://-medrelay.test/service/consent", "trust domain"),
        ("spiffe://medrelay.test-/service/consent", "trust domain"),
        ("spiffe://medrelay.test:443/service/consent", "trust domain"),
        ("spiffe://user@medrelay.test/service/consent", "trust domain"),
        ("spiffe://medrelay_test/service/consent", "trust domain"),
        (f"spiffe://{'a' * 64}.test/service/consent", "trust domain"),
        ("spiffe://medrelay.test/", "expected the path"),
        ("spiffe://medrelay.test/service", "expected the path"),
        ("spiffe://medrelay.test/service/", "name"),
        ("spiffe://medrelay.test/service/consent/", "expected the path"),
        ("spiffe://medrelay.test//service/consent", "expected the path"),
        ("spiffe://medrelay.test/service/consent/extra", "expected the path"),
        ("spiffe://medrelay.test/services/consent", "expected the path"),
        ("spiffe://medrelay.test/Service/consent", "expected the path"),
        ("spiffe://medrelay.test/system/ehr", "expected the path"),
        ("spiffe://medrelay.test/org/org-1/ehr", "expected the path"),
        ("spiffe://medrelay.test/org//system/ehr", "organization id"),
        ("spiffe://medrelay.test/org/Org-1/system/ehr", "organization id"),
        ("spiffe://medrelay.test/org/org-1/system/", "name"),
        ("spiffe://medrelay.test/service/Consent", "name"),
        ("spiffe://medrelay.test/service/-consent", "name"),
        ("spiffe://medrelay.test/service/con%73ent", "name"),
        ("spiffe://medrelay.test/service/consent?x=1", "name"),
        ("spiffe://medrelay.test/service/consent#x", "name"),
        ("spiffe://medrelay.test/service/consent\n", "name"),
        ("spiffe://medrelay.test/service/cönsent", "name"),
        ("spiffe://medrelay.test/service/c\u0660", "name"),  # an Arabic-Indic digit
        (f"spiffe://medrelay.test/service/{'a' * 64}", "name"),
        ("spiffe://bad..td/service/consent/extra", "trust domain"),
    ],
)
def test_parse_rejects(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        PeerIdentity.parse(uri)
    # The message names the offending input so an operator can find the certificate.
    assert repr(uri[:20])[:-1] in str(raised.value)


def test_error_message_truncates_long_input() -> None:
    with pytest.raises(ValueError) as raised:
        PeerIdentity.parse("spiffe://medrelay.test/service/" + "x" * 10_000)
    assert len(str(raised.value)) < 400


@pytest.mark.parametrize(
    "build",
    [
        lambda: PeerIdentity(TD, IdentityKind.SYSTEM, "ehr"),
        lambda: PeerIdentity(TD, IdentityKind.SERVICE, "consent", "org-1"),
        lambda: PeerIdentity(TD, IdentityKind.ADMIN, "alice", "org-1"),
        lambda: PeerIdentity.service("Medrelay", "consent"),
        lambda: PeerIdentity.admin(TD, ""),
        lambda: PeerIdentity.system(TD, "org 1", "ehr"),
    ],
)
def test_constructor_rejects_invalid_parts(build: Callable[[], PeerIdentity]) -> None:
    with pytest.raises(ValueError):
        build()


def test_identity_is_frozen_and_hashable() -> None:
    identity = PeerIdentity.service(TD, "consent")
    with pytest.raises(AttributeError):
        identity.name = "keys"  # type: ignore[misc]
    assert {identity, PeerIdentity.parse(identity.uri)} == {identity}


_names = st.from_regex(r"\A[a-z0-9][a-z0-9-]{0,62}\Z")
_labels = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
_trust_domains = st.lists(_labels, min_size=1, max_size=4).map(".".join)
identities = st.one_of(
    st.builds(PeerIdentity.service, _trust_domains, _names),
    st.builds(PeerIdentity.admin, _trust_domains, _names),
    st.builds(PeerIdentity.system, _trust_domains, _names, _names),
)


@given(identities)
def test_parse_inverts_uri(identity: PeerIdentity) -> None:
    assert PeerIdentity.parse(identity.uri) == identity


_uri_alphabet = st.sampled_from("spiffe:/.-_orgsystemadminservice0aZ%?#@ \n\u0660é")
_near_uris = st.one_of(
    st.text(),
    st.text(_uri_alphabet),
    st.builds(lambda rest: "spiffe://" + rest, st.text(_uri_alphabet)),
    st.builds(
        lambda identity, junk, at: identity.uri[:at] + junk + identity.uri[at:],
        identities,
        st.text(_uri_alphabet, max_size=3),
        st.integers(0, 300),
    ),
)


@given(_near_uris)
def test_only_canonical_uris_parse(text: str) -> None:
    """Whatever parses, formats back to exactly the text it came from (one spelling per id)."""
    try:
        identity = PeerIdentity.parse(text)
    except ValueError:
        return
    assert identity.uri == text
