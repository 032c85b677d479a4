"""Who may call which consent RPC. Anything not listed is refused."""

from medrelay.access import ADMIN, SYSTEM, AccessTable, service

SERVICE_NAME = "medrelay.consent.v1.ConsentService"

_ENFORCERS = (service("exchange"), service("gateway"))

ACCESS = AccessTable(
    SERVICE_NAME,
    {
        # The decision point: the enforcers ask before every send and every read.
        "Check": _ENFORCERS,
        # Care organisations' systems record what their patients decide, directly or through
        # the FHIR gateway; administrators can correct. A system may add versions to and revoke
        # only its own organisation's consents (checked by the store, per consent).
        "RecordConsent": (ADMIN, SYSTEM, service("gateway")),
        "RevokeConsent": (ADMIN, SYSTEM, service("gateway")),
        "GetConsent": (ADMIN, SYSTEM, *_ENFORCERS),
        "ListConsentHistory": (ADMIN, SYSTEM, *_ENFORCERS),
        # Reviewing emergency accesses is an administrator's (a privacy officer's) job.
        "ListEmergencyAccesses": (ADMIN,),
        "CloseEmergencyAccessReview": (ADMIN,),
    },
)
