"""Authorize over real mutual TLS and PostgreSQL: every permit and denial reason."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from medrelay.blind_index import KeysBlindIndex
from medrelay.common.v1 import types_pb2
from medrelay.errors import error_info
from medrelay.identity.v1 import identity_service_pb2 as pb
from medrelay.pki import DevPki
from medrelay.validation import to_timestamp

from .identity_env import (
    TIMEOUT,
    TRUST_DOMAIN,
    IdentityEnv,
    register_org,
    register_practitioner,
    start_identity,
    unique,
)

ROLE = types_pb2.Coding(system="http://snomed.info/sct", code="309343006", display="Physician")


async def add_membership(
    env: IdentityEnv,
    practitioner_id: str,
    org: str,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pb.Membership:
    validity = types_pb2.Period()
    if start:
        validity.start.CopyFrom(to_timestamp(start))
    if end:
        validity.end.CopyFrom(to_timestamp(end))
    return await env.admin.CreateMembership(
        pb.CreateMembershipRequest(
            membership=pb.Membership(
                practitioner_id=practitioner_id,
                organization_id=org,
                role=ROLE,
                validity=validity,
            )
        ),
        timeout=TIMEOUT,
    )


async def denial(call: object) -> str:
    """Await a call that must be refused; return its ErrorInfo reason."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED, caught.value.details()
    info = error_info(caught.value)
    assert info is not None and info.domain == "medrelay.identity.v1"
    return info.reason


def authorize(env: IdentityEnv, practitioner_id: str, org: str = "org-a", system: str = "ehr"):
    return env.system(org, system).Authorize(
        pb.AuthorizeRequest(practitioner_id=practitioner_id), timeout=TIMEOUT
    )


async def test_a_verified_member_is_permitted(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    membership = await add_membership(identity, doctor, "org-a")
    reply = await authorize(identity, doctor)
    assert reply.principal.practitioner_id == doctor
    assert reply.principal.organization_id == "org-a"
    assert reply.principal.system_id == "ehr"
    assert reply.principal.membership_id == membership.id
    assert reply.principal.role.code == "309343006"


async def test_unknown_system(identity: IdentityEnv, dev_pki) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-a")
    # org-x has a certificate from the right CA but was never registered.
    from medrelay.pki import init_dev_pki

    init_dev_pki(
        dev_pki.directory, TRUST_DOMAIN, services=[], admins=[], systems={"org-x": ["ehr"]}
    )
    assert await denial(authorize(identity, doctor, "org-x")) == "ERROR_REASON_UNKNOWN_SYSTEM"


async def set_system_active(env: IdentityEnv, org: str, system: str, active: bool) -> None:
    await env.admin.UpdateSystem(
        pb.UpdateSystemRequest(
            system=pb.System(organization_id=org, id=system, active=active),
            update_mask={"paths": ["active"]},
        ),
        timeout=TIMEOUT,
    )


async def test_system_inactive(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-b")
    await set_system_active(identity, "org-b", "lab", False)
    try:
        assert (
            await denial(authorize(identity, doctor, "org-b", "lab"))
            == "ERROR_REASON_SYSTEM_INACTIVE"
        )
        # The other system of the same organisation still works.
        await authorize(identity, doctor, "org-b", "ehr")
    finally:  # the session's organisations are shared by every test
        await set_system_active(identity, "org-b", "lab", True)
    await authorize(identity, doctor, "org-b", "lab")


async def test_organization_inactive_on_the_next_call(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-c")
    await authorize(identity, doctor, "org-c")
    await identity.admin.UpdateOrganization(
        pb.UpdateOrganizationRequest(
            organization=pb.Organization(id="org-c", active=False),
            update_mask={"paths": ["active"]},
        ),
        timeout=TIMEOUT,
    )
    try:
        assert (
            await denial(authorize(identity, doctor, "org-c"))
            == "ERROR_REASON_ORGANIZATION_INACTIVE"
        )
    finally:
        await identity.admin.UpdateOrganization(
            pb.UpdateOrganizationRequest(
                organization=pb.Organization(id="org-c", active=True),
                update_mask={"paths": ["active"]},
            ),
            timeout=TIMEOUT,
        )


async def test_unknown_practitioner(identity: IdentityEnv) -> None:
    assert (
        await denial(authorize(identity, unique("nobody"))) == "ERROR_REASON_UNKNOWN_PRACTITIONER"
    )


async def test_practitioner_inactive_on_the_next_call(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-a")
    await authorize(identity, doctor)
    await identity.admin.UpdatePractitioner(
        pb.UpdatePractitionerRequest(
            practitioner=pb.Practitioner(id=doctor, active=False), update_mask={"paths": ["active"]}
        ),
        timeout=TIMEOUT,
    )
    assert await denial(authorize(identity, doctor)) == "ERROR_REASON_PRACTITIONER_INACTIVE"


@pytest.mark.parametrize("status", [None, pb.LICENCE_STATUS_SUSPENDED, pb.LICENCE_STATUS_REVOKED])
async def test_licence_unverified(identity: IdentityEnv, status: int | None) -> None:
    doctor = await register_practitioner(identity, verified=status is not None)
    if status is not None:
        await identity.admin.VerifyLicence(
            pb.VerifyLicenceRequest(practitioner_id=doctor, status=status), timeout=TIMEOUT
        )
    await add_membership(identity, doctor, "org-a")
    assert await denial(authorize(identity, doctor)) == "ERROR_REASON_LICENCE_UNVERIFIED"


async def test_no_membership_of_this_organization(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-b")
    assert await denial(authorize(identity, doctor, "org-a")) == "ERROR_REASON_NO_MEMBERSHIP"


async def test_membership_not_yet_valid(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-a", start=datetime.now(UTC) + timedelta(days=3))
    assert await denial(authorize(identity, doctor)) == "ERROR_REASON_MEMBERSHIP_NOT_YET_VALID"


async def test_membership_expired(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    now = datetime.now(UTC)
    await add_membership(
        identity, doctor, "org-a", start=now - timedelta(days=30), end=now - timedelta(days=1)
    )
    assert await denial(authorize(identity, doctor)) == "ERROR_REASON_MEMBERSHIP_EXPIRED"


async def test_membership_ended_between_two_calls_denies_the_second(
    identity: IdentityEnv,
) -> None:
    doctor = await register_practitioner(identity)
    membership = await add_membership(identity, doctor, "org-a")
    await authorize(identity, doctor)
    await identity.admin.EndMembership(
        pb.EndMembershipRequest(membership_id=membership.id), timeout=TIMEOUT
    )
    assert await denial(authorize(identity, doctor)) == "ERROR_REASON_MEMBERSHIP_EXPIRED"


class Clock:
    """The servicer's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def clocked(
    database_dsn: str, fresh_schema: str, dev_pki: DevPki, blind_indexer: KeysBlindIndex
) -> AsyncIterator[tuple[IdentityEnv, Clock]]:
    """An identity service of its own, in a fresh schema, reading the time from a Clock."""
    clock = Clock()
    env = await start_identity(database_dsn, fresh_schema, dev_pki, blind_indexer, clock)
    try:
        await register_org(env, "org-a")
        yield env, clock
    finally:
        await env.close()


async def test_membership_running_out_between_two_calls_denies_the_second(
    clocked: tuple[IdentityEnv, Clock],
) -> None:
    env, clock = clocked
    doctor = await register_practitioner(env)
    end = clock.now + timedelta(minutes=5)
    await add_membership(env, doctor, "org-a", start=clock.now - timedelta(days=1), end=end)
    reply = await authorize(env, doctor)
    assert reply.principal.valid_until.ToDatetime(tzinfo=UTC) == end
    clock.now = end - timedelta(microseconds=1)
    await authorize(env, doctor)
    clock.now = end  # the end is exclusive
    assert await denial(authorize(env, doctor)) == "ERROR_REASON_MEMBERSHIP_EXPIRED"


async def test_a_system_may_not_act_as_another(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-a")
    other = f"spiffe://{TRUST_DOMAIN}/org/org-b/system/ehr"
    call = identity.system("org-a").Authorize(
        pb.AuthorizeRequest(practitioner_id=doctor, system_spiffe_id=other), timeout=TIMEOUT
    )
    assert await denial(call) == "ERROR_REASON_SYSTEM_MISMATCH"


async def test_a_service_relays_a_system(identity: IdentityEnv) -> None:
    doctor = await register_practitioner(identity)
    await add_membership(identity, doctor, "org-b")
    reply = await identity.service("exchange").Authorize(
        pb.AuthorizeRequest(
            practitioner_id=doctor, system_spiffe_id=f"spiffe://{TRUST_DOMAIN}/org/org-b/system/ehr"
        ),
        timeout=TIMEOUT,
    )
    assert reply.principal.organization_id == "org-b"


@pytest.mark.parametrize(
    ("caller", "rpc", "request_message"),
    [
        ("stranger", "Authorize", pb.AuthorizeRequest(practitioner_id="x")),
        ("admin", "Authorize", pb.AuthorizeRequest(practitioner_id="x")),
        (
            "system",
            "CreateOrganization",
            pb.CreateOrganizationRequest(
                organization_id="evil", organization=pb.Organization(display_name="Evil")
            ),
        ),
        (
            "exchange",
            "VerifyLicence",
            pb.VerifyLicenceRequest(practitioner_id="x", status=pb.LICENCE_STATUS_VERIFIED),
        ),
        ("system", "ListCareTeams", pb.ListCareTeamsRequest()),
    ],
)
async def test_identities_missing_from_the_table_are_refused(
    identity: IdentityEnv, caller: str, rpc: str, request_message: object
) -> None:
    stub = {
        "stranger": identity.service("stranger"),
        "admin": identity.admin,
        "system": identity.system("org-a"),
        "exchange": identity.service("exchange"),
    }[caller]
    before = await identity.table_counts()
    reason = await denial(getattr(stub, rpc)(request_message, timeout=TIMEOUT))
    assert reason == "ERROR_REASON_CALLER_NOT_ALLOWED"
    assert await identity.table_counts() == before


async def test_a_call_without_deadline_is_refused(identity: IdentityEnv) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await identity.admin.ListOrganizations(pb.ListOrganizationsRequest())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "ERROR_REASON_DEADLINE_REQUIRED"


async def test_a_system_no_longer_in_standing_cannot_read_the_directory(
    identity: IdentityEnv, dev_pki
) -> None:
    from medrelay.pki import init_dev_pki

    init_dev_pki(
        dev_pki.directory, TRUST_DOMAIN, services=[], admins=[], systems={"org-y": ["ehr"]}
    )
    assert (
        await denial(
            identity.system("org-y").ListOrganizations(
                pb.ListOrganizationsRequest(), timeout=TIMEOUT
            )
        )
        == "ERROR_REASON_UNKNOWN_SYSTEM"
    )

    mask = {"paths": ["active"]}
    await identity.admin.UpdateSystem(
        pb.UpdateSystemRequest(
            system=pb.System(organization_id="org-c", id="lab", active=False), update_mask=mask
        ),
        timeout=TIMEOUT,
    )
    lab = identity.system("org-c", "lab")
    try:
        assert (
            await denial(
                lab.GetPractitioner(
                    pb.GetPractitionerRequest(practitioner_id="anyone"), timeout=TIMEOUT
                )
            )
            == "ERROR_REASON_SYSTEM_INACTIVE"
        )
        assert (
            await denial(
                lab.ResolveRecipients(
                    pb.ResolveRecipientsRequest(
                        recipients=[types_pb2.RecipientRef(organization_id="org-a")]
                    ),
                    timeout=TIMEOUT,
                )
            )
            == "ERROR_REASON_SYSTEM_INACTIVE"
        )
    finally:
        await identity.admin.UpdateSystem(
            pb.UpdateSystemRequest(
                system=pb.System(organization_id="org-c", id="lab", active=True), update_mask=mask
            ),
            timeout=TIMEOUT,
        )
    await lab.ListOrganizations(pb.ListOrganizationsRequest(), timeout=TIMEOUT)
