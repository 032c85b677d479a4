"""`medrelay consent record|revoke|show`: what the patient decided, as their organisation's
system records it (or an administrator corrects it).

`record` takes a FHIR R4 Consent JSON file, or builds the common case from a few options: the
patient permits (or refuses) sharing with named practitioners, organisations or care teams,
for some purposes, in a period, except some sensitive classes. The consent service validates
either the same way. `show` prints a patient's consents and every version (newest first).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from medrelay.consent.v1 import consent_service_pb2 as cpb

from . import inputs
from .failures import usage
from .options import PatientOption, Via, client_command
from .render import Output, message_dict, when

# FHIR and HL7 code systems a privacy Consent uses (public URIs, as any client writes them).
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
SENSITIVITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#: LOINC "Patient consent".
CONSENT_CATEGORY = {"coding": [{"system": inputs.LOINC, "code": "59284-0"}]}
_CONFIDENTIALITY_CODES = frozenset({"U", "L", "M", "N", "R", "V"})
_NEEDS = (
    "an organisation's system certificate (--as org/<organisation>/system/<name>) or an "
    "administrator's (--as admin/<name>)"
)
_FIELDS = {"consent_id": "CONSENT_ID", "reason": "--reason", "patient": "--patient"}

app = typer.Typer(
    help="The patient's consent: record, revoke, show.",
    no_args_is_help=True,
)


def build(
    patient_system: str,
    patient_value: str,
    *,
    allow: list[str],
    purposes: list[str],
    except_classes: list[str],
    start: str | None,
    end: str | None,
    refuse: bool,
    recorded: datetime.datetime | None = None,
) -> dict[str, Any]:
    """A FHIR R4 privacy Consent for the common case (see the module doc)."""
    provision: dict[str, Any] = {"type": "deny" if refuse else "permit"}
    if allow:
        provision["actor"] = [
            {
                "role": {"coding": [{"system": PARTICIPATION_SYSTEM, "code": "IRCP"}]},
                "reference": {"reference": reference},
            }
            for reference in allow
        ]
    if purposes:
        provision["purpose"] = [{"system": PURPOSE_SYSTEM, "code": code} for code in purposes]
    if start or end:
        provision["period"] = {
            key: value for key, value in (("start", start), ("end", end)) if value
        }
    if except_classes:
        provision["provision"] = [
            {
                "type": "permit" if refuse else "deny",
                "securityLabel": [
                    {
                        "system": CONFIDENTIALITY_SYSTEM
                        if code in _CONFIDENTIALITY_CODES
                        else SENSITIVITY_SYSTEM,
                        "code": code,
                    }
                    for code in except_classes
                ],
            }
        ]
    moment = recorded or datetime.datetime.now(datetime.UTC)
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "category": [CONSENT_CATEGORY],
        "patient": {"identifier": {"system": patient_system, "value": patient_value}},
        "dateTime": moment.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "policyRule": {"coding": [{"system": SENSITIVITY_SYSTEM, "code": "OPTIN"}]},
        "provision": provision,
    }


def summary(fhir_json: str) -> str:
    """What a stored Consent says, in a line: 'permit Organization/org-b for TREAT; deny PSY'."""
    try:
        resource = json.loads(fhir_json)
        return _provision_words(resource.get("provision", {}))
    except (ValueError, AttributeError, TypeError):
        return ""


def _provision_words(provision: dict[str, Any], nested: bool = False) -> str:
    """One provision and its nested ones; a nested provision applies within its parent, so
    naming no actor there means "the same actors", not "anyone"."""
    words = ["but" if nested else "", str(provision.get("type", "?"))]
    actors = [a.get("reference", {}).get("reference", "") for a in provision.get("actor", [])]
    if actors:
        words.append(", ".join(a for a in actors if a))
    elif not nested:
        words.append("anyone")
    purposes = [p.get("code", "") for p in provision.get("purpose", [])]
    if purposes:
        words.append("for " + ", ".join(purposes))
    labels = [label.get("code", "") for label in provision.get("securityLabel", [])]
    if labels:
        words.append("data " + ", ".join(labels))
    period = provision.get("period", {})
    if period:
        words.append(f"from {period.get('start', '…')} to {period.get('end', '…')}")
    line = " ".join(word for word in words if word)
    inner = [_provision_words(p, nested=True) for p in provision.get("provision", [])]
    return "; ".join([line, *inner])


def _record_line(record: cpb.ConsentRecord) -> str:
    says = summary(record.fhir_json)
    return f"consent {record.id} version {record.version} ({record.status}): {says}"


@client_command(app, "record")
def record(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="a FHIR R4 Consent (JSON) to record as it is; or use the options below",
            show_default=False,
        ),
    ] = None,
    patient: Annotated[
        str | None,
        typer.Option(help="the patient (SYSTEM|VALUE); needed without --file", show_default=False),
    ] = None,
    allow: Annotated[
        list[str] | None,
        typer.Option(
            "--allow",
            help="who may receive (repeatable): dr-b, org:<organisation>, team:<care team>; "
            "none means anyone",
            show_default=False,
        ),
    ] = None,
    purpose: Annotated[
        list[str] | None,
        typer.Option(help="for which purposes (repeatable; default TREAT)", show_default=False),
    ] = None,
    except_class: Annotated[
        list[str] | None,
        typer.Option(
            "--except-class",
            help="sensitive data excluded (repeatable): PSY, HIV, SEX, ...",
            show_default=False,
        ),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", help="valid from (a FHIR date)", show_default=False)
    ] = None,
    end: Annotated[
        str | None, typer.Option("--until", help="valid until (a FHIR date)", show_default=False)
    ] = None,
    refuse: Annotated[
        bool, typer.Option("--refuse", help="record a refusal instead of a permission")
    ] = False,
    *,
    output: Output,
    via: Via,
) -> None:
    """Record a patient's consent (a new one, or with an id in --file a new version).

    Example: medrelay consent record --as org/hopital-a/system/ehr
    --patient 'urn:oid:1.2.250.1.213.1.4.8|<NIR>' --allow org:clinique-b --purpose TREAT
    """
    if file is not None:
        if any([patient, allow, purpose, except_class, start, end, refuse]):
            raise usage("give either --file or the consent's options, not both")
        try:
            text = file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise usage(f"{file}: no such file; check the path") from None
        except UnicodeDecodeError:
            raise usage(f"{file}: not UTF-8 text (a FHIR JSON file is)") from None
    else:
        if patient is None:
            raise usage("--patient is needed (or give a FHIR Consent with --file)")
        identifier = inputs.patient(patient)
        text = json.dumps(
            build(
                identifier.system,
                identifier.value,
                allow=[inputs.consent_actor(a) for a in allow or []],
                purposes=[inputs.code(p, "--purpose") for p in purpose or ["TREAT"]],
                except_classes=[inputs.code(c, "--except-class") for c in except_class or []],
                start=start,
                end=end,
                refuse=refuse,
            )
        )
    with via.session("consent", action="consent", needs=_NEEDS, options=_FIELDS) as conn:
        stored = conn.consent().RecordConsent(
            cpb.RecordConsentRequest(fhir_json=text), timeout=conn.timeout
        )
    output.result(stored, f"recorded {_record_line(stored)}")


@client_command(app, "revoke")
def revoke(
    consent_id: Annotated[str, typer.Argument(help="the consent's id", show_default=False)],
    reason: Annotated[
        str, typer.Option(help="why (checked, not stored: it could name the patient)")
    ] = "",
    *,
    output: Output,
    via: Via,
) -> None:
    """Revoke a consent: effective at the next send or read, even of earlier documents.

    Example: medrelay consent revoke <consent id> --as org/hopital-a/system/ehr
    """
    with via.session("consent", action="consent", needs=_NEEDS, options=_FIELDS) as conn:
        stored = conn.consent().RevokeConsent(
            cpb.RevokeConsentRequest(consent_id=consent_id, reason=reason),
            timeout=conn.timeout,
        )
    output.result(
        stored, f"revoked consent {stored.id}: version {stored.version} is {stored.status}"
    )


@client_command(app, "show")
def show(
    patient: PatientOption,
    *,
    output: Output,
    via: Via,
) -> None:
    """A patient's consents: the current version of each, then the full history.

    Example: medrelay consent show --as org/hopital-a/system/ehr --patient 'SYSTEM|VALUE'
    """
    identifier = inputs.patient(patient)
    with via.session("consent", action="consent", needs=_NEEDS, options=_FIELDS) as conn:
        versions: list[cpb.ConsentRecord] = conn.list_all(
            conn.consent().ListConsentHistory,
            cpb.ListConsentHistoryRequest(patient=identifier),
            "consents",
        )
    if output.json:
        for version in versions:
            output.emit(message_dict(version))
        return
    if not versions:
        output.say("no consent recorded for this patient (the default policy decides)")
        return
    current: dict[str, cpb.ConsentRecord] = {}
    for version in versions:  # newest first: the first seen of each id is its current one
        current.setdefault(version.id, version)
    now = Table(title="Current consents", title_justify="left")
    for column in ("consent", "version", "status", "recorded", "says"):
        now.add_column(column, no_wrap=column in ("consent", "recorded"))
    for version in current.values():
        now.add_row(
            version.id,
            str(version.version),
            version.status,
            when(version.record_time),
            summary(version.fhir_json),
        )
    output.table(now)
    history = Table(title="History (newest first)", title_justify="left")
    for column in ("recorded", "consent", "version", "status"):
        history.add_column(column, no_wrap=True)
    for version in versions:
        history.add_row(when(version.record_time), version.id, str(version.version), version.status)
    output.table(history)
