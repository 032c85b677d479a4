"""Who a call acts as: the caller itself, or the one system the relay names."""

from __future__ import annotations

import contextvars

import grpc
import pytest

from medrelay.access import service
from medrelay.acting import SYSTEM_METADATA, acting_caller
from medrelay.caller import set_caller
from medrelay.errors import MedrelayError
from medrelay.spiffe import PeerIdentity

DOMAIN = "medrelay.test"
GATEWAY = PeerIdentity.service(DOMAIN, "gateway")
EHR = PeerIdentity.system(DOMAIN, "org-a", "ehr")
RELAY = service("gateway")


class Context:
    """The one thing acting_caller asks of a servicer context."""

    def __init__(self, *metadata: tuple[str, str | bytes]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self._metadata


def acting(caller: PeerIdentity, *metadata: tuple[str, str | bytes]) -> PeerIdentity:
    """acting_caller as the interceptor would run it, with `caller` admitted (in a context of
    its own, so no test sees another's caller)."""

    def run() -> PeerIdentity:
        set_caller(caller)
        return acting_caller(Context(*metadata), RELAY)  # type: ignore[arg-type]

    return contextvars.copy_context().run(run)


def relaying(*systems: str) -> tuple[tuple[str, str], ...]:
    return tuple((SYSTEM_METADATA, system) for system in systems)


def refused(caller: PeerIdentity, *metadata: tuple[str, str | bytes]) -> MedrelayError:
    with pytest.raises(MedrelayError) as caught:
        acting(caller, *metadata)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.metadata["field"] == SYSTEM_METADATA
    return caught.value


@pytest.mark.parametrize(
    "caller",
    [EHR, PeerIdentity.admin(DOMAIN, "admin"), PeerIdentity.service(DOMAIN, "exchange")],
    ids=["system", "admin", "service"],
)
def test_any_caller_but_the_relay_acts_as_itself_and_may_not_relay(caller: PeerIdentity) -> None:
    assert acting(caller) == caller
    refused(caller, *relaying(EHR.uri))


def test_the_relay_acts_as_the_system_it_names() -> None:
    assert acting(GATEWAY, *relaying(EHR.uri)) == EHR
    # Other metadata, binary values under other keys included, is not looked at.
    other = (("x-other", "x"), ("trace-bin", b"\x00"))
    assert acting(GATEWAY, *other, *relaying(EHR.uri)) == EHR


@pytest.mark.parametrize(
    "relayed",
    [
        (),
        (EHR.uri, EHR.uri),
        (EHR.uri, PeerIdentity.system(DOMAIN, "org-b", "ehr").uri),
        ("",),
        ("not a spiffe id",),
        (f"spiffe://{DOMAIN}/org/Org-A/system/ehr",),
        (EHR.uri + "/",),
        (PeerIdentity.admin(DOMAIN, "admin").uri,),
        (PeerIdentity.service(DOMAIN, "exchange").uri,),
        (PeerIdentity.system("elsewhere.test", "org-a", "ehr").uri,),
    ],
    ids=[
        "none",
        "twice",
        "two",
        "empty",
        "junk",
        "uppercase",
        "trailing-slash",
        "admin",
        "service",
        "other-trust-domain",
    ],
)
def test_the_relay_must_name_exactly_one_system_of_its_trust_domain(
    relayed: tuple[str, ...],
) -> None:
    refused(GATEWAY, *relaying(*relayed))
