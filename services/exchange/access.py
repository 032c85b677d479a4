"""Who may call which exchange RPC. Anything not listed is refused.

Organisations' systems call for their practitioners; the FHIR gateway relays systems'
requests (naming the relayed system in `x-medrelay-system`, see acting.py). Identity then
authorises the (system, practitioner) pair on every call.
"""

from medrelay.access import SYSTEM, AccessTable, service

SERVICE_NAME = "medrelay.exchange.v1.ExchangeService"

RELAY = service("gateway")
_CALLERS = (SYSTEM, RELAY)

ACCESS = AccessTable(
    SERVICE_NAME,
    {
        method: _CALLERS
        for method in (
            "SendDocument",
            "ListInbox",
            "FetchDocument",
            "AcknowledgeDocument",
            "ForwardDocument",
            "RecallDocument",
            "GetDocument",
            "ListNotices",
            # The patient's access report: who may see which report is decided in the
            # servicer (report.py), like every document's access.
            "ListPatientAccesses",
        )
    },
)
