"""The exchange servicer: every send and every read authorised, consented and audited, now.

Order of a send: validate the header; identity authorises the sender; a retry (same request
id) is answered from what was stored; identity resolves the recipients; consent is asked for
every recipient, and one refusal refuses the send; keys makes the data key, wrapped per
recipient organisation; the content is encrypted as it streams in, inside one transaction
that ends with the sealed header, the sender organisation's signature, the deliveries and the
audit record. Order of a fetch: identity authorises the reader; the reader must be a recipient
now; consent is asked again; keys releases the key from the reader's organisation's wrap; the
signature is verified; the access is audited; then the content streams out, decrypted and
hashed as it goes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import grpc

from medrelay import audit
from medrelay import validation as check
from medrelay.blind_index import KeysBlindIndex
from medrelay.common.v1 import types_pb2
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.envelope import EnvelopeDecryptor, EnvelopeEncryptor, EnvelopeError
from medrelay.errors import (
    MedrelayError,
    invalid_field,
    not_found,
    permission_denied,
)
from medrelay.exchange.v1 import exchange_service_pb2 as pb
from medrelay.exchange.v1 import exchange_service_pb2_grpc as pb_grpc
from medrelay.server import ServiceDefinition

from . import report, requests, sealing, views
from .access import ACCESS
from .acting import acting_system
from .consent_client import ConsentDecisions, Decision
from .deidentifying import Deidentifier, pieces
from .dependencies import bind_deadline
from .entitlement import Entitlement, entitle, needs_care_teams
from .identity_client import IdentityDirectory, recipient_not_entitled
from .keys_client import KeyCustody
from .model import (
    DeliveryState,
    Principal,
    Recipient,
    SealedHeader,
    SignedFacts,
    StoredDocument,
    StoredForward,
)
from .settings import ExchangeSettings
from .store import ExchangeStore, NewDocument, sent

log = logging.getLogger("medrelay.exchange")

Clock = Callable[[], datetime]
T = TypeVar("T")
#: The blind-index kind of a send's request fingerprint (keys keeps kinds apart).
FINGERPRINT_KIND = "send-request"


def utc_now() -> datetime:
    """The service clock."""
    return datetime.now(UTC)


class ExchangeServicer(pb_grpc.ExchangeServiceServicer):
    """ExchangeService over its store and the identity, consent and keys services."""

    def __init__(
        self,
        store: ExchangeStore,
        directory: IdentityDirectory,
        consent: ConsentDecisions,
        keys: KeyCustody,
        indexer: KeysBlindIndex,
        settings: ExchangeSettings,
        *,
        deidentifier: Deidentifier | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._directory = directory
        self._consent = consent
        self._keys = keys
        self._indexer = indexer
        self._settings = settings
        self._deidentifier = deidentifier or Deidentifier(
            indexer,
            max_bytes=settings.max_deidentify_bytes,
            concurrency=settings.deidentify_concurrency,
        )
        self._now = clock

    # --- send ------------------------------------------------------------------------------

    async def SendDocument(
        self,
        request_iterator: AsyncIterator[pb.SendDocumentRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.Document:
        bind_deadline(context)
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "header":
            raise invalid_field("header", "the first message of a send must be the header")
        limit = self._settings.max_document_bytes
        header = requests.send_header(first.header, limit)
        system = acting_system(context)
        # Independent questions, asked together; the authorisation's answer is looked at first,
        # so an unauthorised caller learns nothing about the recipients.
        authorized, fingerprinted, indexed, earlier_sent, resolution = await asyncio.gather(
            self._directory.authorize(system, header.practitioner_id),
            self._indexer.index(
                FINGERPRINT_KIND,
                hashlib.sha256(first.header.SerializeToString(deterministic=True)).hexdigest(),
            ),
            self._indexer.patient(header.patient.system, header.patient.value),
            self._store.by_request(system.uri, header.request_id),
            self._resolve(header.recipients, "header.recipients"),
            return_exceptions=True,
        )
        principal = _result(authorized)
        fingerprint = _result(fingerprinted)
        earlier = _result(earlier_sent)
        if earlier is not None:
            return _retry_answer(earlier, fingerprint)
        resolved = _result(resolution)
        patient_index = _result(indexed)
        document_id = str(uuid.uuid4())
        # The pending mark is written while consent decides; a refusal takes it back.
        consented, marked = await asyncio.gather(
            self._check_recipients(
                principal, header, resolved, patient_index, resource_id=header.request_id
            ),
            self._store.mark_pending(document_id),
            return_exceptions=True,
        )
        if isinstance(consented, BaseException):
            if not isinstance(marked, BaseException):
                await _shielded(self._store.unmark_pending(document_id))
            raise consented
        _result(marked)
        try:
            data_key = await self._keys.generate(
                document_id, sorted({r.organization_id for r in resolved})
            )
            try:
                stored = await self._store_send(
                    document_id,
                    data_key,
                    principal,
                    header,
                    fingerprint,
                    patient_index,
                    resolved,
                    messages,
                )
            finally:
                del data_key
        except asyncpg.UniqueViolationError:
            # The same request id committed by a concurrent send: that one stands.
            await _shielded(self._abandon(document_id))
            earlier = await self._store.by_request(system.uri, header.request_id)
            if earlier is None:
                raise
            return _retry_answer(earlier, fingerprint)
        except BaseException:
            await _shielded(self._abandon(document_id))
            raise
        return views.sender_view(stored)

    async def _store_send(
        self,
        document_id: str,
        data_key: bytes,
        principal: Principal,
        header: requests.SendHeader,
        fingerprint: str,
        patient_index: str,
        resolved: Sequence[Recipient],
        messages: AsyncIterator[pb.SendDocumentRequest],
    ) -> StoredDocument:
        now = self._now()
        recipients = requests.recipient_refs(header.recipients)
        new = NewDocument(
            id=document_id,
            sender_system=principal.system_uri,
            request_id=header.request_id,
            request_fingerprint=fingerprint,
            sender_practitioner_id=principal.practitioner_id,
            sender_organization_id=principal.organization_id,
            patient_index=patient_index,
            type=header.type,
            specialty=header.specialty,
            content_type=header.content_type,
            purpose=header.purpose,
            data_classes=header.data_classes,
            recipients=recipients,
            create_time=now,
            expire_time=now + self._settings.retention_of(header.type.system, header.type.code),
            deidentified=header.deidentify,
        )
        limit = self._settings.max_document_bytes
        chunks = _chunks(messages, header.size_bytes, limit)
        patient = header.patient
        if header.deidentify:
            case = await self._deidentifier.case(patient_index, header.case_label)
            copy = await self._deidentifier.copy(chunks, header.content_type, case)
            chunks = pieces(copy.content)
            patient = types_pb2.PatientIdentifier()  # recipients never learn who it was
        async with self._store.sending(new) as send:
            encryptor = EnvelopeEncryptor(data_key, document_id)
            await send.content.write(encryptor.header())
            digest = hashlib.sha256()
            size = 0
            async for data in chunks:
                size += len(data)
                if size > limit:  # a de-identified copy may outgrow what arrived
                    raise requests.too_large(limit)
                digest.update(data)
                for sealed in encryptor.update(data):
                    await send.content.write(sealed)
            await send.content.write(encryptor.finalize())
            sealed_header = SealedHeader(
                patient.system,
                patient.value,
                header.title,
                header.note,
                digest.digest(),
            )
            sealed = sealing.seal(
                data_key, sealing.header_label(document_id), sealed_header.encode()
            )
            unsigned = sent(
                new,
                size_bytes=size,
                sealed_header=sealed,
                signature=b"",
                signature_key_version=0,
                recipients=resolved,
            )
            signature, key_version = await self._keys.sign(
                principal.organization_id, SignedFacts.of(unsigned).digest()
            )
            stored = dataclasses.replace(
                unsigned, signature=signature, signature_key_version=key_version
            )
            await send.complete(
                document_id,
                size_bytes=size,
                sealed_header=stored.sealed_header,
                signature=signature,
                signature_key_version=key_version,
                recipients=resolved,
                event=_event(
                    principal,
                    "exchange.document.send",
                    document_id,
                    recipients=len(resolved),
                    organizations=len({r.organization_id for r in resolved}),
                    size_bytes=size,
                    deidentified=header.deidentify or "",  # only on de-identified sends
                ),
            )
        return stored

    async def _abandon(self, document_id: str) -> None:
        """Shred the key of a send that failed, and forget it (the sweeper retries)."""
        try:
            await self._keys.shred(document_id)
            await self._store.unmark_pending(document_id)
        except Exception as exc:  # the sweeper shreds abandoned sends later
            log.warning("could not clean up a failed send", extra={"error": type(exc).__name__})

    # --- reads -----------------------------------------------------------------------------

    async def ListInbox(
        self, request: pb.ListInboxRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListInboxResponse:
        bind_deadline(context)
        practitioner_id = requests.practitioner(request.practitioner_id)
        patient = None
        if request.HasField("patient"):
            patient = check_patient(request.patient, "patient")
        size = check.page_size(request.page_size)
        after = requests.page_token(request.page_token)
        principal = await self._authorize(context, practitioner_id)
        patient_index = None if patient is None else await self._indexer.patient(*patient)
        filters = requests.inbox_filter(request, patient_index)
        teams = await self._directory.care_teams(principal.practitioner_id)
        documents = await self._store.inbox(
            principal.practitioner_id,
            principal.organization_id,
            sorted(teams),
            filters,
            self._now(),
            after,
            size + 1,
        )
        response = pb.ListInboxResponse()
        for document in documents[:size]:
            entitlement = entitle(document.deliveries, principal, teams)
            response.documents.append(views.recipient_view(document, entitlement.deliveries))
        if len(documents) > size:
            last = documents[size - 1]
            response.next_page_token = requests.next_page_token(last.create_time, last.id)
        return response

    async def FetchDocument(
        self, request: pb.FetchDocumentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.FetchDocumentResponse]:
        bind_deadline(context)
        document_id = requests.document_id(request.document_id)
        practitioner_id = requests.practitioner(request.practitioner_id)
        purpose = requests.purpose(request.purpose, "purpose")
        justification = requests.justification(request.justification, purpose)
        principal, document, entitlement = await self._readable(
            context, practitioner_id, document_id, "fetch"
        )
        # The signature covers what is stored, so it is verified while consent decides.
        decided, verified = await asyncio.gather(
            self._consent.check(
                None,
                document.patient_index,
                principal.practitioner_id,
                principal.organization_id,
                purpose,
                document.data_classes,
                justification,
                deidentified=document.deidentified,
            ),
            self._signature_valid(document),
            return_exceptions=True,
        )
        decision = _result(decided)
        if not decision.permitted:
            await self._deny(principal, "exchange.document.fetch", document_id, decision)
            raise _consent_denied(decision, "")
        if not _result(verified):
            raise await self._integrity_failure(principal, document_id, "signature")
        data_key = await self._keys.unwrap(document_id, principal.organization_id)
        try:
            disclosure = self._disclose(document, data_key, entitlement)
            now = self._now()
            await self._store.advance(
                document_id,
                entitlement.deliveries,
                DeliveryState.FETCHED,
                now,
                _event(
                    principal,
                    "exchange.document.fetch",
                    document_id,
                    purpose=purpose,
                    emergency=decision.emergency,
                    emergency_access=decision.emergency_access_id,
                ),
            )
            fresh = document.advanced(entitlement.deliveries, DeliveryState.FETCHED, now)
            yield pb.FetchDocumentResponse(
                document=views.recipient_view(fresh, _mine(fresh, entitlement), disclosure)
            )
            digest = hashlib.sha256()
            decryptor = EnvelopeDecryptor(data_key, document_id)
            try:
                async for piece in self._store.content.read(document_id):
                    for plaintext in decryptor.update(piece):
                        digest.update(plaintext)
                        yield pb.FetchDocumentResponse(chunk=plaintext)
                last = decryptor.finalize()
            except EnvelopeError:
                # Recalled or purged while streaming: the chunks went away, which is no
                # corruption. Otherwise the envelope itself failed to authenticate.
                now_stored = await self._store.document(document_id)
                if now_stored is not None and _gone(now_stored, self._now()):
                    error = _gone_error(now_stored)
                    await self._refused(principal, "fetch", document_id, error)
                    raise error from None
                raise await self._integrity_failure(principal, document_id, "content") from None
            if last:
                digest.update(last)
                yield pb.FetchDocumentResponse(chunk=last)
        finally:
            del data_key
        if digest.digest() != disclosure.header.sha256:
            raise await self._integrity_failure(principal, document_id, "content hash")
        yield pb.FetchDocumentResponse(
            trailer=pb.FetchTrailer(sha256=digest.digest(), signature_valid=True)
        )

    async def AcknowledgeDocument(
        self, request: pb.AcknowledgeDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Document:
        bind_deadline(context)
        document_id = requests.document_id(request.document_id)
        practitioner_id = requests.practitioner(request.practitioner_id)
        principal, document, entitlement = await self._readable(
            context, practitioner_id, document_id, "acknowledge"
        )
        now = self._now()
        await self._store.advance(
            document_id,
            entitlement.deliveries,
            DeliveryState.READ,
            now,
            _event(principal, "exchange.document.acknowledge", document_id),
        )
        fresh = document.advanced(entitlement.deliveries, DeliveryState.READ, now)
        return views.recipient_view(fresh, _mine(fresh, entitlement))

    async def GetDocument(
        self, request: pb.GetDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Document:
        bind_deadline(context)
        document_id = requests.document_id(request.document_id)
        practitioner_id = requests.practitioner(request.practitioner_id)
        principal, document = await self._principal_and_document(
            context, practitioner_id, document_id, "get"
        )
        if _is_sender(document, principal):
            return views.sender_view(document)
        if _gone(document, self._now()) and _ever_addressed(document, principal):
            return views.recipient_view(document, _addressed(document, principal))
        try:
            entitlement = await self._entitlement_now(document, principal)
        except MedrelayError as refusal:
            await self._refused(principal, "get", document_id, refusal)
            raise
        return views.recipient_view(document, entitlement.deliveries)

    async def ListNotices(
        self, request: pb.ListNoticesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNoticesResponse:
        bind_deadline(context)
        practitioner_id = requests.practitioner(request.practitioner_id)
        size = check.page_size(request.page_size)
        after = requests.page_token(request.page_token)
        principal = await self._authorize(context, practitioner_id)
        notices = await self._store.notices(
            principal.practitioner_id, principal.organization_id, after, size + 1
        )
        response = pb.ListNoticesResponse(
            notices=[
                pb.Notice(
                    id=n.id,
                    document_id=n.document_id,
                    kind=pb.NOTICE_KIND_NON_DELIVERY,
                    delivery=views.delivery(n.delivery),
                    create_time=check.to_timestamp(n.create_time),
                )
                for n in notices[:size]
            ]
        )
        if len(notices) > size:
            last = notices[size - 1]
            response.next_page_token = requests.next_page_token(last.create_time, last.id)
        return response

    async def ListPatientAccesses(
        self, request: pb.ListPatientAccessesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListPatientAccessesResponse:
        """The patient's access report. Who may see it (report.py): a practitioner identity
        authorises for the calling system (or the system the gateway relays), whose
        organisation sent or received one of the patient's documents; anyone else gets an
        empty page, as for a patient nobody knows. Every call is in the ledger under a new
        opaque report id that only `access_reports` links to the patient's blind index, so
        later reports on the patient show it; an identity refusal is recorded there too."""
        bind_deadline(context)
        asked = requests.access_report(request)
        system = acting_system(context)
        authorized, indexed = await asyncio.gather(
            self._directory.authorize(system, asked.practitioner_id),
            self._indexer.patient(*asked.patient),
            return_exceptions=True,
        )
        report_id = str(uuid.uuid4())
        if isinstance(authorized, BaseException):
            if (
                isinstance(authorized, MedrelayError)
                and authorized.code == grpc.StatusCode.PERMISSION_DENIED
                and isinstance(indexed, str)
            ):
                actor = Principal(asked.practitioner_id, "", system.uri)
                await self._store.record_report(
                    report_id,
                    indexed,
                    _report_event(
                        actor, report_id, outcome="denied", reason=authorized.reason_name
                    ),
                )
            raise authorized
        principal = authorized
        patient_index = _result(indexed)
        size = asked.page_size
        in_care = await self._store.took_part(patient_index, principal.organization_id)
        accesses = (
            await self._store.patient_accesses(patient_index, asked.before_seq, size + 1)
            if in_care
            else []
        )
        page = accesses[:size]
        # Recorded before anything is answered: no report leaves unrecorded.
        await self._store.record_report(
            report_id,
            patient_index,
            _report_event(
                principal,
                report_id,
                records=len(page),
                continued=asked.before_seq is not None,
            )
            if in_care
            else _report_event(principal, report_id, outcome="denied", reason=report.NOT_IN_CARE),
        )
        response = pb.ListPatientAccessesResponse(
            records=[views.access_record(report.entry(a.record, a.document_purpose)) for a in page]
        )
        if len(accesses) > size:
            response.next_page_token = requests.next_sequence_page_token(page[-1].record.seq)
        return response

    # --- changes ---------------------------------------------------------------------------

    async def ForwardDocument(
        self, request: pb.ForwardDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Document:
        bind_deadline(context)
        document_id = requests.document_id(request.document_id)
        practitioner_id = requests.practitioner(request.practitioner_id)
        refs = requests.recipients(request.recipients, "recipients")
        note = check.text(request.note, "note", max_chars=requests.MAX_NOTE_CHARS, required=False)
        principal, document, entitlement = await self._readable(
            context, practitioner_id, document_id, "forward"
        )
        resolved = await self._resolve(refs, "recipients")
        known = {d.key for d in document.deliveries}
        added = [
            r
            for r in resolved
            if (r.practitioner_id, r.organization_id, r.care_team_id) not in known
        ]
        forward_id = str(uuid.uuid4())
        await self._check_recipients(
            principal, document, added, document.patient_index, resource_id=document_id
        )
        sealed_note = None
        if note:
            data_key = await self._keys.unwrap(document_id, principal.organization_id)
            try:
                sealed_note = sealing.seal(
                    data_key, sealing.note_label(document_id, forward_id), note.encode()
                )
            finally:
                del data_key
        new_organizations = sorted({r.organization_id for r in added} - document.organizations)
        if new_organizations:
            await self._keys.rewrap(document_id, principal.organization_id, new_organizations)
        forward = StoredForward(
            id=forward_id,
            practitioner_id=principal.practitioner_id,
            organization_id=principal.organization_id,
            recipients=requests.recipient_refs(refs),
            sealed_note=sealed_note,
            create_time=self._now(),
        )
        await self._store.forward(
            document_id,
            forward,
            added,
            _event(
                principal,
                "exchange.document.forward",
                document_id,
                forward=forward_id,
                recipients=len(added),
                organizations_added=len(new_organizations),
            ),
        )
        fresh = await self._store.document(document_id) or document
        return views.recipient_view(fresh, _mine(fresh, entitlement))

    async def RecallDocument(
        self, request: pb.RecallDocumentRequest, context: grpc.aio.ServicerContext
    ) -> pb.Document:
        bind_deadline(context)
        document_id = requests.document_id(request.document_id)
        practitioner_id = requests.practitioner(request.practitioner_id)
        reason = requests.recall_reason(request.reason)
        principal, document = await self._principal_and_document(
            context, practitioner_id, document_id, "recall"
        )
        if not _is_sender(document, principal):
            refusal = (
                permission_denied(
                    ErrorReason.ERROR_REASON_CALLER_NOT_ALLOWED,
                    "only the sender may recall a document",
                )
                if _ever_addressed(document, principal)
                else not_found("Document")
            )
            await self._refused(principal, "recall", document_id, refusal)
            raise refusal
        if document.recall_time is None:
            shredded = await self._keys.shred(document_id)
            await self._store.recall(
                document_id,
                reason,
                self._now(),
                _event(
                    principal,
                    "exchange.document.recall",
                    document_id,
                    reason_code=reason,
                    wraps_shredded=shredded,
                ),
            )
        fresh = await self._store.document(document_id) or document
        return views.sender_view(fresh)

    # --- shared steps ----------------------------------------------------------------------

    async def _authorize(
        self, context: grpc.aio.ServicerContext, practitioner_id: str
    ) -> Principal:
        return await self._directory.authorize(acting_system(context), practitioner_id)

    async def _resolve(self, refs: Sequence[object], field: str) -> list[Recipient]:
        resolution = await self._directory.resolve(refs)  # type: ignore[arg-type]
        if resolution.dropped:
            index, cause = min(resolution.dropped)
            raise recipient_not_entitled(index, field, cause)
        if not resolution.recipients:
            raise MedrelayError(
                grpc.StatusCode.FAILED_PRECONDITION,
                ErrorReason.ERROR_REASON_NO_RECIPIENT,
                f"no one named in {field} can receive the document",
            )
        # One delivery per (practitioner, organisation, care team), in request order.
        unique = {
            (r.practitioner_id, r.organization_id, r.care_team_id): r
            for r in resolved_sorted(resolution.recipients)
        }
        return list(unique.values())

    async def _check_recipients(
        self,
        principal: Principal,
        about: requests.SendHeader | StoredDocument,
        recipients: Sequence[Recipient],
        patient_index: str,
        *,
        resource_id: str,
    ) -> None:
        """Consent for every recipient, asked together; the first refusal refuses all."""
        patient = about.patient if isinstance(about, requests.SendHeader) else None
        actors = sorted({(r.practitioner_id, r.organization_id) for r in recipients})
        decisions = await asyncio.gather(
            *(
                self._consent.check(
                    patient,
                    None if patient is not None else patient_index,
                    practitioner,
                    organization,
                    about.purpose,
                    about.data_classes,
                    deidentified=(
                        about.deidentify
                        if isinstance(about, requests.SendHeader)
                        else about.deidentified
                    ),
                    field_prefix="header." if patient is not None else "",
                )
                for practitioner, organization in actors
            )
        )
        for (practitioner, organization), decision in zip(actors, decisions, strict=True):
            if not decision.permitted:
                index = next(
                    r.source_index
                    for r in recipients
                    if (r.practitioner_id, r.organization_id) == (practitioner, organization)
                )
                action = (
                    "exchange.document.send"
                    if isinstance(about, requests.SendHeader)
                    else "exchange.document.forward"
                )
                await self._deny(
                    principal,
                    action,
                    resource_id,
                    decision,
                    recipient_organization=organization,
                    recipient_practitioner=practitioner,
                )
                who = f"practitioner {practitioner} in " if practitioner else ""
                raise _consent_denied(
                    decision,
                    f"recipients[{index}] ({who}organisation {organization}): ",
                    index=index,
                )

    async def _principal_and_document(
        self,
        context: grpc.aio.ServicerContext,
        practitioner_id: str,
        document_id: str,
        verb: str,
    ) -> tuple[Principal, StoredDocument]:
        """Identity's authorisation and the stored document, asked together; the
        authorisation's refusal comes first."""
        system = acting_system(context)
        authorized, read = await asyncio.gather(
            self._directory.authorize(system, practitioner_id),
            self._store.document(document_id),
            return_exceptions=True,
        )
        document = _result(read)
        if isinstance(authorized, MedrelayError) and document is not None:
            # An attempt on a document by someone not entitled to act: the patient's report.
            actor = Principal(practitioner_id, "", system.uri)
            await self._refused(actor, verb, document_id, authorized)
        principal = _result(authorized)
        if document is None:
            raise not_found("Document")
        return principal, document

    async def _readable(
        self,
        context: grpc.aio.ServicerContext,
        practitioner_id: str,
        document_id: str,
        verb: str,
    ) -> tuple[Principal, StoredDocument, Entitlement]:
        """Who acts, the document and their entitlement to it now, or the refusal. Every
        refusal about a document that exists is in the ledger, a stranger's probe included:
        the patient's access report shows attempts, not only accesses."""
        principal, document = await self._principal_and_document(
            context, practitioner_id, document_id, verb
        )
        try:
            entitlement = await self._entitlement_now(document, principal)
        except MedrelayError as refusal:
            await self._refused(principal, verb, document_id, refusal)
            raise
        return principal, document, entitlement

    async def _entitlement_now(self, document: StoredDocument, principal: Principal) -> Entitlement:
        if _gone(document, self._now()):
            if not _ever_addressed(document, principal):
                raise not_found("Document")
            raise _gone_error(document)
        if _is_sender(document, principal) and not _ever_addressed(document, principal):
            raise permission_denied(
                ErrorReason.ERROR_REASON_NOT_A_RECIPIENT,
                "a document is encrypted for its recipients only; its sender sees its "
                "deliveries with GetDocument",
            )
        return await self._entitle(document, principal)

    async def _refused(
        self, principal: Principal, verb: str, document_id: str, refusal: MedrelayError
    ) -> None:
        """A denied attempt on an existing document, in the ledger."""
        if refusal.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
            await self._store.record(
                _event(
                    principal,
                    f"exchange.document.{verb}",
                    document_id,
                    outcome="denied",
                    reason=refusal.reason_name,
                )
            )

    async def _entitle(self, document: StoredDocument, principal: Principal) -> Entitlement:
        teams: frozenset[str] = frozenset()
        if needs_care_teams(document.deliveries, principal):
            teams = await self._directory.care_teams(principal.practitioner_id)
        return entitle(document.deliveries, principal, teams)

    def _disclose(
        self, document: StoredDocument, data_key: bytes, entitlement: Entitlement
    ) -> views.Disclosure:
        try:
            header = SealedHeader.decode(
                sealing.open_sealed(
                    data_key, sealing.header_label(document.id), document.sealed_header
                )
            )
            forward_ids = {d.forward_id for d in entitlement.deliveries if d.forward_id}
            notes = {
                f.id: sealing.open_sealed(
                    data_key, sealing.note_label(document.id, f.id), f.sealed_note
                ).decode()
                for f in document.forwards
                if f.sealed_note is not None and f.id in forward_ids
            }
        except (EnvelopeError, ValueError, UnicodeDecodeError):
            raise _integrity_error("sealed header") from None
        return views.Disclosure(header, notes)

    async def _signature_valid(self, document: StoredDocument) -> bool:
        """Whether the sender organisation's signature over the stored facts verifies."""
        facts = SignedFacts.of(document)
        return await self._keys.verify(
            document.sender_organization_id,
            facts.digest(),
            document.signature,
            document.signature_key_version,
        )

    async def _integrity_failure(
        self, principal: Principal, document_id: str, what: str
    ) -> MedrelayError:
        log.error("document failed its integrity check", extra={"what": what})
        await self._store.record(
            _event(
                principal,
                "exchange.document.fetch",
                document_id,
                outcome="error",
                reason="ERROR_REASON_INTEGRITY_CHECK_FAILED",
                failed=what,
            )
        )
        return _integrity_error(what)

    async def _deny(
        self,
        principal: Principal,
        action: str,
        resource_id: str,
        decision: Decision,
        **details: str,
    ) -> None:
        await self._store.record(
            _event(
                principal,
                action,
                resource_id,
                outcome="denied",
                reason="ERROR_REASON_CONSENT_DENIED",
                consent_reason=decision.reason,
                decided_by=",".join(decision.decided_by),
                **details,
            )
        )


def resolved_sorted(recipients: Sequence[Recipient]) -> list[Recipient]:
    """Recipients in the order the request named them."""
    return sorted(recipients, key=lambda r: r.source_index)


def check_patient(patient: types_pb2.PatientIdentifier, field: str) -> tuple[str, str]:
    """A patient filter, validated like every patient identifier."""
    return check.patient_identifier(patient.system, patient.value, field)


def _result(outcome: T | BaseException) -> T:
    """A gathered result, or its exception raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _key(recipient: Recipient) -> tuple[str, str, str]:
    return (recipient.practitioner_id, recipient.organization_id, recipient.care_team_id)


async def _chunks(
    messages: AsyncIterator[pb.SendDocumentRequest], announced: int, limit: int
) -> AsyncIterator[bytes]:
    """A send's content, checked as it arrives: chunks only, each at most 1 MiB, at most
    `limit` in all, and as many bytes as the header announced (when it did)."""
    size = 0
    async for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise invalid_field("chunk", "only content chunks may follow the header")
        data = message.chunk
        if len(data) > requests.MAX_CHUNK_BYTES:
            raise invalid_field("chunk", "is larger than 1 MiB")
        size += len(data)
        if size > limit:
            raise requests.too_large(limit)
        yield data
    if announced and announced != size:
        raise invalid_field("header.size_bytes", f"announced {announced} bytes, {size} arrived")


def _retry_answer(earlier: StoredDocument, fingerprint: str) -> pb.Document:
    if earlier.request_fingerprint != fingerprint:
        raise MedrelayError(
            grpc.StatusCode.ALREADY_EXISTS,
            ErrorReason.ERROR_REASON_REQUEST_ID_REUSED,
            "this request id was used for another send; use a new request id",
            {"field": "header.request_id"},
        )
    return views.sender_view(earlier)


def _is_sender(document: StoredDocument, principal: Principal) -> bool:
    return (
        document.sender_practitioner_id == principal.practitioner_id
        and document.sender_organization_id == principal.organization_id
    )


def _addressed(document: StoredDocument, principal: Principal) -> list:  # type: ignore[type-arg]
    return [
        d
        for d in document.deliveries
        if d.practitioner_id == principal.practitioner_id
        or (d.practitioner_id == "" and d.organization_id == principal.organization_id)
    ]


def _ever_addressed(document: StoredDocument, principal: Principal) -> bool:
    return bool(_addressed(document, principal))


def _mine(document: StoredDocument, entitlement: Entitlement) -> list:  # type: ignore[type-arg]
    keys = {d.key for d in entitlement.deliveries}
    return [d for d in document.deliveries if d.key in keys]


def _gone(document: StoredDocument, now: datetime) -> bool:
    return (
        document.recall_time is not None
        or document.purge_time is not None
        or document.expire_time <= now
    )


def _gone_error(document: StoredDocument) -> MedrelayError:
    if document.recall_time is not None:
        return MedrelayError(
            grpc.StatusCode.NOT_FOUND,
            ErrorReason.ERROR_REASON_DOCUMENT_RECALLED,
            "the sender recalled the document",
            {"recall_reason": document.recall_reason},
        )
    return MedrelayError(
        grpc.StatusCode.NOT_FOUND,
        ErrorReason.ERROR_REASON_DOCUMENT_EXPIRED,
        "the document passed its retention period and was destroyed",
    )


def _consent_denied(decision: Decision, who: str, *, index: int | None = None) -> MedrelayError:
    metadata = {"decision_reason": decision.reason, "decided_by": ",".join(decision.decided_by)}
    if index is not None:
        metadata["recipient_index"] = str(index)
    return MedrelayError(
        grpc.StatusCode.PERMISSION_DENIED,
        ErrorReason.ERROR_REASON_CONSENT_DENIED,
        f"{who}the patient's consent does not permit this ({decision.reason})",
        metadata,
    )


def _integrity_error(what: str) -> MedrelayError:
    return MedrelayError(
        grpc.StatusCode.DATA_LOSS,
        ErrorReason.ERROR_REASON_INTEGRITY_CHECK_FAILED,
        f"the document's {what} failed its integrity check",
    )


def _event(
    principal: Principal,
    action: str,
    resource_id: str,
    *,
    outcome: str = "success",
    reason: str = "",
    resource_type: str = "Document",
    **details: str | int | bool,
) -> audit.AuditEvent:
    return audit.AuditEvent(
        actor=f"practitioner/{principal.practitioner_id}",
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        reason=reason,
        details={
            "organization": principal.organization_id,
            "system": principal.system_uri,
            **{k: v for k, v in details.items() if v != ""},
        },
    )


def _report_event(
    principal: Principal,
    report_id: str,
    *,
    outcome: str = "success",
    reason: str = "",
    **details: str | int | bool,
) -> audit.AuditEvent:
    """A ListPatientAccesses call's ledger record: the patient appears only as the report's
    one-time id (resource type Patient), never as an identifier or index."""
    return _event(
        principal,
        report.ACTION,
        report_id,
        outcome=outcome,
        reason=reason,
        resource_type=report.RESOURCE_TYPE,
        **details,
    )


async def _shielded(cleanup: Coroutine[Any, Any, None]) -> None:
    """Run a cleanup to its end even when the call that needed it was cancelled."""
    with suppress(asyncio.CancelledError):
        await asyncio.shield(cleanup)


def definition(
    servicer: ExchangeServicer, on_stop: Callable[[], Awaitable[None]] | None = None
) -> ServiceDefinition:
    """The exchange service as a server sees it."""
    return ServiceDefinition(
        name="exchange",
        access=ACCESS,
        add_to_server=lambda server: pb_grpc.add_ExchangeServiceServicer_to_server(
            servicer, server
        ),
        on_stop=on_stop,
    )


__all__ = ["ExchangeServicer", "definition", "utc_now"]
