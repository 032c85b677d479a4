"""The patient's access report as IHE Basic Audit Log Patterns (BALP) AuditEvents.

The records come from exchange's tamper-evident ledger (ListPatientAccesses), which decides
who may see them; the gateway only shapes them. Each record becomes one AuditEvent in the
shape of BALP's patient-specific patterns (PatientCreate, PatientRead, PatientUpdate,
PatientDelete): a RESTful-operation type, the user and the client system as agents, the
exchange service as observer, the document and the patient as entities.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from medrelay.common.v1 import types_pb2
from medrelay.exchange.v1 import exchange_service_pb2 as exchange_pb

from .context import Gateway, base_url
from .fhir_json import fhir_response
from .fhir_types import instant, token
from .outcome import bad_request
from .search import page_links, page_size, refuse_unknown, searchset, single

_BALP: Final = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
_INTERACTION: Final = "http://hl7.org/fhir/restful-interaction"
_PURPOSE: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
#: exchange ledger action → (FHIR interaction, AuditEvent.action, BALP pattern)
_ACTIONS: Final = {
    "send": ("create", "C", "PatientCreate"),
    "fetch": ("read", "R", "PatientRead"),
    "get": ("read", "R", "PatientRead"),
    "acknowledge": ("update", "U", "PatientUpdate"),
    "forward": ("update", "U", "PatientUpdate"),
    "recall": ("delete", "D", "PatientDelete"),
    "expire": ("delete", "D", "PatientDelete"),
    "purge": ("delete", "D", "PatientDelete"),
    "non_delivery": ("read", "E", "PatientQuery"),
    "access_report": ("search", "E", "PatientQuery"),
}
#: AccessOutcome → AuditEvent.outcome (0 success, 4 minor failure: refused, 8 serious failure)
_OUTCOMES: Final = {
    exchange_pb.ACCESS_OUTCOME_SUCCESS: "0",
    exchange_pb.ACCESS_OUTCOME_DENIED: "4",
    exchange_pb.ACCESS_OUTCOME_ERROR: "8",
}


def audit_event(
    record: exchange_pb.AccessRecord, patient: types_pb2.PatientIdentifier, base: str
) -> dict[str, Any]:
    """One ledger record about the patient's documents as a BALP AuditEvent."""
    verb = record.action.rsplit(".", 1)[-1]
    interaction, action, pattern = _ACTIONS.get(verb, ("read", "E", "PatientQuery"))
    agents: list[dict[str, Any]] = []
    if record.actor_practitioner_id:
        agents.append(
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                            "display": "information recipient",
                        }
                    ]
                },
                "who": {"reference": f"Practitioner/{record.actor_practitioner_id}"},
                "requestor": True,
            }
        )
    if record.actor_organization_id:
        agents.append(
            {
                "who": {"reference": f"Organization/{record.actor_organization_id}"},
                "requestor": False,
            }
        )
    if record.actor_system:
        agents.append(
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://dicom.nema.org/resources/ontology/DCM",
                            "code": "110150",
                            "display": "Application",
                        }
                    ]
                },
                "who": {
                    "identifier": {"system": "urn:ietf:rfc:3986", "value": record.actor_system}
                },
                "requestor": False,
            }
        )
    if not agents:
        agents.append({"who": {"display": "medrelay"}, "requestor": False})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"exchange-{record.sequence}",
        "meta": {"profile": [f"{_BALP}{pattern}"]},
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "Restful Operation",
        },
        "subtype": [{"system": _INTERACTION, "code": interaction}],
        "action": action,
        "recorded": instant(record.occurred_time),
        "outcome": _OUTCOMES.get(record.outcome, "8"),
        "agent": agents,
        "source": {
            "observer": {"display": "medrelay exchange"},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
        "entity": [
            {
                "what": {"identifier": {"system": patient.system, "value": patient.value}},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                    "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1",
                    "display": "Patient",
                },
            }
        ],
    }
    if record.outcome != exchange_pb.ACCESS_OUTCOME_SUCCESS and record.reason:
        event["outcomeDesc"] = record.reason
    if record.document_id:
        event["entity"].append(
            {
                "what": {"reference": f"DocumentReference/{record.document_id}"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2",
                    "display": "System Object",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "3",
                    "display": "Report",
                },
            }
        )
    purpose = "ETREAT" if record.emergency else record.purpose
    if purpose:
        event["purposeOfEvent"] = [{"coding": [{"system": _PURPOSE, "code": purpose}]}]
    return event


async def search_audit_events(request: web.Request) -> web.Response:
    """GET /AuditEvent?patient.identifier=system|value: who accessed the patient's documents."""
    gateway = Gateway.of(request)
    caller = gateway.caller(request)
    query = request.query
    refuse_unknown(query, frozenset({"patient", "patient.identifier", "patient:identifier"}))
    value = (
        single(query, "patient.identifier")
        or single(query, "patient:identifier")
        or single(query, "patient")
    )
    if not value:
        raise bad_request(
            "search parameter patient.identifier (system|value) is required: the report is "
            "about one patient",
            "patient.identifier",
        )
    system, identifier = token(value, "patient.identifier")
    patient = types_pb2.PatientIdentifier(system=system, value=identifier)
    reply = await gateway.upstreams.call(
        gateway.upstreams.exchange.ListPatientAccesses,
        exchange_pb.ListPatientAccessesRequest(
            practitioner_id=caller.practitioner_id,
            patient=patient,
            page_size=page_size(query),
            page_token=single(query, "_page_token"),
        ),
        caller,
        field_paths={
            "patient": "patient.identifier",
            "page_size": "_count",
            "page_token": "_page_token",
        },
    )
    base = base_url(request)
    return fhir_response(
        searchset(
            [audit_event(record, patient, base) for record in reply.records],
            page_links(request, base, reply.next_page_token),
            base,
        )
    )
