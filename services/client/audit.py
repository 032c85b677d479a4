"""`medrelay audit report --patient`: who opened the patient's record, when and why, in words a
person (the patient, a privacy officer) can read.

The records come from the exchange service's tamper-evident ledger (ListPatientAccesses): every
send, opening, refused attempt, forward, recall and expiry of the patient's documents, and every
earlier report, newest first. Asking is itself recorded and shows in the next report.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from medrelay.exchange.v1 import exchange_service_pb2 as xpb

from . import inputs
from .options import PatientOption, PractitionerOption, Via, client_command
from .render import Output, message_dict, when

#: The ledger's actions in words (the document is the next column).
ACTIONS = {
    "exchange.document.send": "sent",
    "exchange.document.fetch": "opened",
    "exchange.document.get": "looked at its deliveries",
    "exchange.document.acknowledge": "confirmed reading",
    "exchange.document.forward": "forwarded",
    "exchange.document.recall": "recalled",
    "exchange.document.non_delivery": "noted it unopened",
    "exchange.document.expire": "destroyed its keys (retention)",
    "exchange.document.purge": "deleted it (retention)",
    "exchange.patient.access_report": "viewed this report",
}
#: Common PurposeOfUse codes in words; others are shown as their code.
PURPOSES = {
    "TREAT": "treatment",
    "ETREAT": "emergency treatment",
    "HPAYMT": "payment",
    "HRESCH": "research",
    "HOPERAT": "operations",
    "PATRQT": "patient's request",
    "PUBHLTH": "public health",
}
_OUTCOMES = {
    xpb.ACCESS_OUTCOME_SUCCESS: ("allowed", "green"),
    xpb.ACCESS_OUTCOME_DENIED: ("refused", "red"),
    xpb.ACCESS_OUTCOME_ERROR: ("failed", "yellow"),
}
_FIELDS = {"patient": "--patient", "practitioner_id": "--practitioner"}


def outcome_words(record: xpb.AccessRecord) -> str:
    """'allowed', or 'refused: consent denied'."""
    word = _OUTCOMES.get(record.outcome, ("?", ""))[0]
    if record.reason:
        reason = record.reason.removeprefix("ERROR_REASON_").replace("_", " ").lower()
        return f"{word}: {reason}"
    return word


def who(record: xpb.AccessRecord) -> str:
    """The practitioner, or medrelay itself for its own work (retention, notices)."""
    return record.actor_practitioner_id or "medrelay (automatic)"


def purpose_words(record: xpb.AccessRecord) -> str:
    """'treatment', 'emergency treatment (break-the-glass)', ''."""
    words = PURPOSES.get(record.purpose, record.purpose)
    if record.emergency:
        words = f"{words} (break-the-glass)" if words else "break-the-glass"
    return words


def register(audit_app: typer.Typer) -> None:
    """Add `report` to the existing `medrelay audit` group."""
    client_command(audit_app, "report")(report)


def report(
    patient: PatientOption,
    practitioner: PractitionerOption,
    limit: Annotated[int, typer.Option(min=1, max=100000, help="at most this many records")] = 1000,
    *,
    output: Output,
    via: Via,
) -> None:
    """The patient's access report: who opened their record, when, and why, newest first.

    Asked by a practitioner whose organisation took part in the patient's care through medrelay
    (anyone else sees an empty report); the request itself is recorded.
    Example: medrelay audit report --as org/hopital-a/system/ehr -p dr-a --patient 'SYSTEM|VALUE'
    """
    identifier = inputs.patient(patient)
    with via.session(
        "exchange", practitioner=practitioner, action="report", options=_FIELDS
    ) as conn:
        records: list[xpb.AccessRecord] = conn.list_all(
            conn.exchange().ListPatientAccesses,
            xpb.ListPatientAccessesRequest(practitioner_id=practitioner, patient=identifier),
            "records",
            limit=limit,
        )
    if output.json:
        for record in records:
            output.emit(message_dict(record))
        return
    if not records:
        output.say(
            "no access recorded (or none you may see: only organisations that sent or "
            "received this patient's documents see the report)"
        )
        return
    table = Table(title="Who accessed this patient's record", title_justify="left")
    table.add_column("when", no_wrap=True)
    table.add_column("who")
    table.add_column("organisation")
    table.add_column("did")
    table.add_column("outcome")
    table.add_column("purpose")
    table.add_column("document", no_wrap=True)
    for record in records:
        style = _OUTCOMES.get(record.outcome, ("", ""))[1]
        table.add_row(
            when(record.occurred_time),
            who(record),
            record.actor_organization_id,
            ACTIONS.get(record.action, record.action),
            Text(outcome_words(record), style=style),
            purpose_words(record),
            record.document_id[:8],
        )
    output.table(table)
    refused = sum(1 for r in records if r.outcome == xpb.ACCESS_OUTCOME_DENIED)
    emergencies = sum(1 for r in records if r.emergency)
    output.say(f"{len(records)} records: {refused} refused, {emergencies} emergency accesses")
