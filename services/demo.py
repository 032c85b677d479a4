"""`medrelay demo`: the story medrelay exists for, played on the local stack `make run` starts.

A radiologist sends a CT scan and an annotated image to the referring doctor of a clinic, who
reads them and forwards them to a surgeon; a colleague who has left the hospital is refused;
the patient revokes consent and the next read is refused; the patient's access report shows
every access and refusal; the ledgers verify; and a dump of the whole database holds none of
the scan's bytes. Every step checks its own outcome, so the demo doubles as a smoke test of a
running stack (tests/e2e/test_demo.py runs it).

It talks to the services only through their gRPC stubs, as an EHR and an administrator would,
with the certificates of the dev PKI; each run uses a new patient, so it can be run again.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import grpc

from medrelay import tls
from medrelay.common.v1 import types_pb2
from medrelay.consent.v1 import consent_service_pb2 as cpb
from medrelay.consent.v1 import consent_service_pb2_grpc as consent_grpc
from medrelay.errors import error_info_from_metadata
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as exchange_grpc
from medrelay.identity.v1 import identity_service_pb2 as ipb
from medrelay.identity.v1 import identity_service_pb2_grpc as identity_grpc
from medrelay.pki import DevPki
from medrelay.spiffe import PeerIdentity

from .client.failures import Failure
from .client.transfer import Outgoing, fetch_to_file, send_file
from .devstack import STACK_FILE

TIMEOUT = 10.0
MIB = 1024 * 1024
NIR = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"
IMAGING = types_pb2.Coding(system=LOINC, code="18748-4", display="Diagnostic imaging study")
PHYSICIAN = types_pb2.Coding(system="http://snomed.info/sct", code="309343006")
LICENCE_REGISTRY = "urn:oid:1.2.250.1.71.4.2.1"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
PURPOSE_OF_USE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"

HOSPITAL_A, CLINIC_B, HOSPITAL_C = "hopital-a", "clinique-b", "hopital-c"
ORGANISATIONS = {
    HOSPITAL_A: "Hôpital A",
    CLINIC_B: "Clinique B",
    HOSPITAL_C: "Hôpital C",
}


@dataclass(frozen=True)
class Doctor:
    practitioner_id: str
    given_name: str
    family_name: str
    organization_id: str
    licence: str


RADIOLOGIST = Doctor("dr-radiologue-a", "Inès", "Moreau", HOSPITAL_A, "10000000101")
REFERRER = Doctor("dr-generaliste-b", "Paul", "Lefèvre", CLINIC_B, "10000000102")
SURGEON = Doctor("dr-chirurgien-c", "Aïcha", "Benali", HOSPITAL_C, "10000000103")
LEAVER = Doctor("dr-ancien-a", "Marc", "Dupont", HOSPITAL_A, "10000000104")
DOCTORS = (RADIOLOGIST, REFERRER, SURGEON, LEAVER)


class DemoFailed(Exception):
    """A step did not end as the story says it must; the message says what happened."""


@dataclass(frozen=True)
class LocalStack:
    """Where the stack of `medrelay dev` listens, as it wrote it in <home>/stack.json."""

    home: Path
    database_url: str
    ports: dict[str, int]
    trust_domain: str

    @classmethod
    def find(cls, home: Path) -> LocalStack:
        try:
            described = json.loads((home / STACK_FILE).read_text())
        except FileNotFoundError:
            raise DemoFailed(
                f"no local stack is running from {home} (start it with `make run`)"
            ) from None
        return cls(
            home=home,
            database_url=described["database_url"],
            ports={name: int(port) for name, port in described["ports"].items()},
            trust_domain=described["trust_domain"],
        )

    def channel(self, service: str, identity: PeerIdentity) -> grpc.Channel:
        paths = DevPki.load(self.home / "pki", self.trust_domain).paths(identity)
        return grpc.secure_channel(
            f"127.0.0.1:{self.ports[service]}", tls.channel_credentials(paths)
        )

    def admin(self) -> PeerIdentity:
        return PeerIdentity.admin(self.trust_domain, "admin")

    def ehr(self, organization_id: str) -> PeerIdentity:
        return PeerIdentity.system(self.trust_domain, organization_id, "ehr")


def reason_of(exc: grpc.RpcError) -> str:
    """The ErrorReason a medrelay service gave, or the status code's name."""
    info = error_info_from_metadata(exc.trailing_metadata())
    if info is not None and info.reason:
        return str(info.reason)
    return str(exc.code().name)


def created(call: Callable[..., object], request: object) -> bool:
    """Make a create call; True when it created, False when the thing already existed (a
    second run of the demo finds its organisations and doctors)."""
    try:
        call(request, timeout=TIMEOUT)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.ALREADY_EXISTS:
            return False
        raise
    return True


# -- what the radiologist sends -------------------------------------------------------------


def ct_scan(size: int = 8 * MIB) -> bytes:
    """A stand-in CT series: a DICOM preamble and random voxels (incompressible, so a copy in
    the database would show)."""
    return b"\0" * 128 + b"DICM" + secrets.token_bytes(size - 132)


def annotated_png(width: int = 256, height: int = 256) -> bytes:
    """A real PNG: a grey gradient with a red ring where the radiologist marked the lesion."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            ring = abs(((x - 160) ** 2 + (y - 110) ** 2) ** 0.5 - 30) < 2.5
            grey = (x + y) * 255 // (width + height)
            row += bytes((255, 0, 0) if ring else (grey, grey, grey))
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def consent_json(patient_value: str) -> str:
    """The patient's consent: the three organisations of this episode of care may share the
    patient's records for treatment."""
    return json.dumps(
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
            "patient": {"identifier": {"system": NIR, "value": patient_value}},
            "dateTime": "2026-11-23T09:00:00Z",
            "provision": {
                "type": "permit",
                "purpose": [{"system": PURPOSE_OF_USE, "code": "TREAT"}],
                "actor": [
                    {
                        "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP"}]},
                        "reference": {"reference": f"Organization/{organization}"},
                    }
                    for organization in ORGANISATIONS
                ],
            },
        }
    )


# -- the story ------------------------------------------------------------------------------


class Demo:
    """The story's steps, in order; each prints what happened and checks it."""

    def __init__(self, stack: LocalStack, say: Callable[[str], None]) -> None:
        self.stack = stack
        self.say = say
        self.patient = types_pb2.PatientIdentifier(
            system=NIR, value=f"2{secrets.randbelow(10**12):012d}"
        )
        self.channels: list[grpc.Channel] = []
        self.scan = ct_scan()
        self.image = annotated_png()
        self.note = (
            f"Lésion hépatique segment VI, 32 mm — avis chirurgical ? ({uuid.uuid4().hex[:6]})"
        )
        self.documents: list[str] = []
        self.consent_id = ""
        # The doctors' files: what is sent, and what each reader saves (removed at the end).
        self.files = Path(tempfile.mkdtemp(prefix="medrelay-demo-"))

    def _stub(self, service: str, identity: PeerIdentity) -> grpc.Channel:
        channel = self.stack.channel(service, identity)
        self.channels.append(channel)
        return channel

    def identity(self) -> identity_grpc.IdentityServiceStub:
        return identity_grpc.IdentityServiceStub(self._stub("identity", self.stack.admin()))

    def exchange(self, organization_id: str) -> exchange_grpc.ExchangeServiceStub:
        return exchange_grpc.ExchangeServiceStub(
            self._stub("exchange", self.stack.ehr(organization_id))
        )

    def consent(self, organization_id: str) -> consent_grpc.ConsentServiceStub:
        return consent_grpc.ConsentServiceStub(
            self._stub("consent", self.stack.ehr(organization_id))
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()
        shutil.rmtree(self.files, ignore_errors=True)

    def play(self) -> None:
        steps = [
            ("Two hospitals and a clinic are registered", self.register),
            ("The patient consents to sharing within the care team", self.record_consent),
            ("The radiologist at hospital A sends a CT scan and an annotated image", self.send),
            ("The referring doctor at clinic B reads them", self.read_at_b),
            ("B forwards them to a surgeon at hospital C, who reads them", self.forward_to_c),
            ("A colleague who has left hospital A tries to read the scan", self.leaver_refused),
            ("The patient revokes consent; B's next read is refused", self.revoke),
            ("The patient's access report lists every access and refusal", self.report),
            ("`medrelay audit verify`: every ledger's hash chain is intact", self.verify),
            ("A pg_dump of the whole database holds none of the scan's bytes", self.dump),
        ]
        for number, (title, step) in enumerate(steps, 1):
            self.say(f"{number:>2}. {title}")
            try:
                step()
            except grpc.RpcError as exc:
                reason = reason_of(exc)
                if reason == "UNAVAILABLE":
                    reason += " (is `make run` still running?)"
                raise DemoFailed(f"step {number}: the call failed: {reason}") from None
            except Failure as exc:
                raise DemoFailed(f"step {number}: {exc}") from None
            except DemoFailed as exc:
                raise DemoFailed(f"step {number}: {exc}") from None

    def _detail(self, text: str) -> None:
        self.say(f"      {text}")

    def register(self) -> None:
        identity = self.identity()
        made = 0
        for organization_id, name in ORGANISATIONS.items():
            made += created(
                identity.CreateOrganization,
                ipb.CreateOrganizationRequest(
                    organization_id=organization_id,
                    organization=ipb.Organization(display_name=name, active=True),
                ),
            )
            made += created(
                identity.CreateSystem,
                ipb.CreateSystemRequest(
                    organization_id=organization_id,
                    system_id="ehr",
                    system=ipb.System(display_name=f"{name} EHR", active=True),
                ),
            )
        for doctor in DOCTORS:
            made += created(
                identity.CreatePractitioner,
                ipb.CreatePractitionerRequest(
                    practitioner_id=doctor.practitioner_id,
                    practitioner=ipb.Practitioner(
                        given_name=doctor.given_name,
                        family_name=doctor.family_name,
                        active=True,
                        licence=ipb.Licence(registry=LICENCE_REGISTRY, number=doctor.licence),
                    ),
                ),
            )
            identity.VerifyLicence(
                ipb.VerifyLicenceRequest(
                    practitioner_id=doctor.practitioner_id, status=ipb.LICENCE_STATUS_VERIFIED
                ),
                timeout=TIMEOUT,
            )
            self._ensure_membership(identity, doctor)
        # The colleague worked at hospital A until today.
        for membership in self._memberships(identity, LEAVER):
            identity.EndMembership(
                ipb.EndMembershipRequest(membership_id=membership.id), timeout=TIMEOUT
            )
        self._detail(
            f"{len(ORGANISATIONS)} organisations with their EHR systems, {len(DOCTORS)} doctors "
            f"with verified licences ({made} records created now, the rest kept from before); "
            f"{LEAVER.given_name} {LEAVER.family_name}'s membership of {HOSPITAL_A} has ended"
        )

    @staticmethod
    def _memberships(
        identity: identity_grpc.IdentityServiceStub, doctor: Doctor
    ) -> Iterator[ipb.Membership]:
        """The doctor's memberships of their organisation that have no end yet."""
        page = identity.ListMemberships(
            ipb.ListMembershipsRequest(practitioner_id=doctor.practitioner_id, page_size=1000),
            timeout=TIMEOUT,
        )
        for membership in page.memberships:
            if membership.organization_id == doctor.organization_id and not (
                membership.validity.HasField("end")
            ):
                yield membership

    def _ensure_membership(
        self, identity: identity_grpc.IdentityServiceStub, doctor: Doctor
    ) -> None:
        if any(True for _ in self._memberships(identity, doctor)):
            return
        identity.CreateMembership(
            ipb.CreateMembershipRequest(
                membership=ipb.Membership(
                    practitioner_id=doctor.practitioner_id,
                    organization_id=doctor.organization_id,
                    role=PHYSICIAN,
                )
            ),
            timeout=TIMEOUT,
        )

    def record_consent(self) -> None:
        record = self.consent(HOSPITAL_A).RecordConsent(
            cpb.RecordConsentRequest(fhir_json=consent_json(self.patient.value)),
            timeout=TIMEOUT,
        )
        self.consent_id = record.id
        self._detail(
            f"consent {record.id} recorded by {HOSPITAL_A}: treatment by {', '.join(ORGANISATIONS)}"
        )

    def send(self) -> None:
        """Sent as a person sends them: files on disk, through the client's `send_file`."""
        for name, title, content_type, content in (
            (
                "ct-abdomen-pelvis.dcm",
                "CT abdomen-pelvis with contrast",
                "application/dicom",
                self.scan,
            ),
            ("ct-slice-142-annotated.png", "CT slice 142, annotated", "image/png", self.image),
        ):
            path = self.files / name
            path.write_bytes(content)
            outgoing = Outgoing(
                practitioner=RADIOLOGIST.practitioner_id,
                patient=self.patient,
                recipients=[types_pb2.RecipientRef(practitioner_id=REFERRER.practitioner_id)],
                type=IMAGING,
                note=self.note,
                title=title,
                content_type=content_type,
            )
            sent = send_file(self.exchange(HOSPITAL_A), path, outgoing, timeout=TIMEOUT)
            self.documents.append(sent.document.id)
            self._detail(
                f"{sent.document.id}  {title} ({sent.size:,} bytes) → {REFERRER.practitioner_id}"
            )

    def _fetch(self, organization_id: str, practitioner_id: str, document_id: str) -> bytes:
        """Fetched as a person fetches it: `fetch_to_file`, which saves the file only once its
        size, SHA-256 and signature check out."""
        fetched = fetch_to_file(
            self.exchange(organization_id),
            document_id,
            practitioner_id,
            self.files / f"{practitioner_id}-{uuid.uuid4().hex[:8]}-{document_id}",
            timeout=TIMEOUT,
        )
        if not fetched.signature_valid:
            raise DemoFailed("the document arrived without a valid signature")
        return fetched.path.read_bytes()

    def _read_all(self, doctor: Doctor) -> None:
        for document_id, expected in zip(self.documents, (self.scan, self.image), strict=True):
            if self._fetch(doctor.organization_id, doctor.practitioner_id, document_id) != expected:
                raise DemoFailed(f"{doctor.practitioner_id} read other bytes than were sent")
            self.exchange(doctor.organization_id).AcknowledgeDocument(
                xpb.AcknowledgeDocumentRequest(
                    document_id=document_id, practitioner_id=doctor.practitioner_id
                ),
                timeout=TIMEOUT,
            )
        self._detail(
            f"{doctor.practitioner_id} read both: signatures valid, SHA-256 equal to what was "
            "sent; receipts sent"
        )

    def read_at_b(self) -> None:
        inbox = self.exchange(CLINIC_B).ListInbox(
            xpb.ListInboxRequest(practitioner_id=REFERRER.practitioner_id, page_size=1000),
            timeout=TIMEOUT,
        )
        listed = {document.id for document in inbox.documents}
        if not set(self.documents) <= listed:
            raise DemoFailed("the documents are not in the referring doctor's inbox")
        self._detail(f"both documents are in {REFERRER.practitioner_id}'s inbox")
        self._read_all(REFERRER)

    def forward_to_c(self) -> None:
        for document_id in self.documents:
            self.exchange(CLINIC_B).ForwardDocument(
                xpb.ForwardDocumentRequest(
                    document_id=document_id,
                    practitioner_id=REFERRER.practitioner_id,
                    recipients=[types_pb2.RecipientRef(practitioner_id=SURGEON.practitioner_id)],
                    note="Avis chirurgical svp",
                ),
                timeout=TIMEOUT,
            )
        self._detail(f"forwarded to {SURGEON.practitioner_id} (rewrapped for {HOSPITAL_C})")
        self._read_all(SURGEON)

    def _refused(self, organization_id: str, doctor: Doctor, expected: set[str]) -> str:
        try:
            self._fetch(organization_id, doctor.practitioner_id, self.documents[0])
        except grpc.RpcError as exc:
            reason = reason_of(exc)
            if reason not in expected:
                raise DemoFailed(f"refused, but for {reason}") from None
            return reason
        raise DemoFailed(f"{doctor.practitioner_id} could read the scan")

    def leaver_refused(self) -> None:
        reason = self._refused(
            HOSPITAL_A, LEAVER, {"ERROR_REASON_MEMBERSHIP_EXPIRED", "ERROR_REASON_NOT_A_MEMBER"}
        )
        self._detail(f"refused: {reason}")

    def revoke(self) -> None:
        self.consent(HOSPITAL_A).RevokeConsent(
            cpb.RevokeConsentRequest(consent_id=self.consent_id, reason="patient request"),
            timeout=TIMEOUT,
        )
        self._detail(f"consent {self.consent_id} revoked")
        reason = self._refused(CLINIC_B, REFERRER, {"ERROR_REASON_CONSENT_DENIED"})
        self._detail(f"{REFERRER.practitioner_id}'s read refused: {reason}")

    def report(self) -> None:
        page = self.exchange(HOSPITAL_A).ListPatientAccesses(
            xpb.ListPatientAccessesRequest(
                practitioner_id=RADIOLOGIST.practitioner_id, patient=self.patient, page_size=1000
            ),
            timeout=TIMEOUT,
        )
        records = list(reversed(page.records))
        for record in records:
            outcome = xpb.AccessOutcome.Name(record.outcome).removeprefix("ACCESS_OUTCOME_")
            who = record.actor_practitioner_id or "medrelay"
            where = record.actor_organization_id or "-"
            self._detail(
                f"{record.occurred_time.ToDatetime():%H:%M:%S}  {record.action:<32} "
                f"{who:<18} {where:<11} {outcome.lower()} {record.reason}".rstrip()
            )
        seen = {(r.action, r.actor_practitioner_id, r.outcome) for r in records}
        done, refused = xpb.ACCESS_OUTCOME_SUCCESS, xpb.ACCESS_OUTCOME_DENIED
        for expected in (
            ("exchange.document.send", RADIOLOGIST.practitioner_id, done),
            ("exchange.document.fetch", REFERRER.practitioner_id, done),
            ("exchange.document.forward", REFERRER.practitioner_id, done),
            ("exchange.document.fetch", SURGEON.practitioner_id, done),
            ("exchange.document.fetch", LEAVER.practitioner_id, refused),
            ("exchange.document.fetch", REFERRER.practitioner_id, refused),
        ):
            if expected not in seen:
                raise DemoFailed(f"the report lacks {expected[0]} by {expected[1]}")

    def verify(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDRELAY_")}
        result = subprocess.run(
            [sys.executable, "-m", "medrelay.services.cli", "audit", "verify", "--service", "all"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, "MEDRELAY_DATABASE_URL": self.stack.database_url},
            check=False,
        )
        for line in result.stdout.splitlines():
            self._detail(line)
        if result.returncode != 0:
            raise DemoFailed(f"audit verify exited {result.returncode}: {result.stderr.strip()}")

    def dump(self) -> None:
        # The password goes in PGPASSWORD, not in the arguments every `ps` shows.
        parts = urlsplit(self.stack.database_url)
        env = dict(os.environ)
        if parts.password is not None:
            env["PGPASSWORD"] = unquote(parts.password)
            netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
            parts = parts._replace(netloc=netloc)
        result = subprocess.run(
            [pg_dump(), "--dbname", urlunsplit(parts)],
            capture_output=True,
            timeout=300,
            env=env,
            check=False,
        )
        if result.returncode != 0:
            raise DemoFailed("pg_dump failed: " + result.stderr.decode("utf-8", "replace")[:200])
        dump = result.stdout
        probes = {
            "the scan": [
                self.scan[offset : offset + 32] for offset in range(4096, len(self.scan), 1 << 20)
            ],
            "the image": [self.image[-64:-32]],
            "the note": [self.note.encode()],
            "the patient's identifier": [self.patient.value.encode()],
        }
        for what, pieces in probes.items():
            if any(piece in dump for piece in pieces):
                raise DemoFailed(f"the database dump contains {what}")
        self._detail(
            f"{len(dump):,} bytes of SQL searched for {sum(map(len, probes.values()))} pieces of "
            "the scan, the image, the note and the patient's identifier: none found"
        )


def pg_dump() -> str:
    """The embedded PostgreSQL's pg_dump when installed (the version of the server `make run`
    starts), else the one on PATH."""
    try:
        from medrelay.embedded_pg import EmbeddedPostgres

        return str(EmbeddedPostgres.bin_path("pg_dump"))
    except (ImportError, FileNotFoundError):
        return "pg_dump"


def play(home: Path, say: Callable[[str], None]) -> None:
    """Run the story on the stack `medrelay dev` runs from `home`; DemoFailed says which step
    did not end as it should."""
    demo = Demo(LocalStack.find(home), say)
    try:
        demo.play()
    finally:
        demo.close()
