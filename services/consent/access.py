"""Who may call which consent RPC. Anything not listed is refused."""

from medrelay.access import ADMIN, SYSTEM, AccessTable, service

SERVICE_NAME = "medrelay.consent.v1.ConsentService"

#: The FHIR gateway: it names the system it relays in `x-medrelay-system` (medrelay.acting)
#: on every call but Check, and consent treats the call as that system's.
RELAY = service("gateway")
_ENFORCERS = (service("exchange"), RELAY)

ACCESS = AccessTable(
    SERVICE_NAME,
    {
        # The decision point: the enforcers ask before every send and every read.
        "Check": _ENFORCERS,
        # Care organisations' systems record what their patients decide, directly or through
        # the FHIR gateway (relaying the system); administrators can correct. A system may add
        # versions to and revoke only its own organisation's consents (checked by the store,
        # per consent), whether it calls directly or through the gateway.
        "RecordConsent": (ADMIN, SYSTEM, RELAY),
        "RevokeConsent": (ADMIN, SYSTEM, RELAY),
        "GetConsent": (ADMIN, SYSTEM, *_ENFORCERS),
        "ListConsentHistory": (ADMIN, SYSTEM, *_ENFORCERS),
        # Reviewing emergency accesses is an administrator's (a privacy officer's) job.
        "ListEmergencyAccesses": (ADMIN,),
        "CloseEmergencyAccessReview": (ADMIN,),
    },
)
