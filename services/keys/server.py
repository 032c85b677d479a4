"""The keys servicer: validation, the release policy, and the audit trail around the engine.

The engine (Vault Transit or the local backend) does the cryptography; this module decides
who gets what. Every request is validated whole before anything is written, the plaintext
data key is returned to the exchange service only, and every release and refusal of a data
key is in the ledger before the answer leaves.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import grpc

from medrelay import audit
from medrelay import validation as check
from medrelay.caller import current_caller
from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import (
    MedrelayError,
    already_exists,
    failed_precondition,
    invalid_field,
    not_found,
    permission_denied,
)
from medrelay.keys.v1 import keys_service_pb2 as pb
from medrelay.keys.v1 import keys_service_pb2_grpc as pb_grpc
from medrelay.server import ServiceDefinition
from medrelay.spiffe import PeerIdentity

from . import naming
from .access import ACCESS, RELEASE_TO
from .engine import KeyInfo, KeyType, TransitEngine, ciphertext_version
from .errors import access_shredded, engine_errors, integrity_failed, shredded, wrap_mismatch
from .store import KeysStore, StoredWrap

_LOG = logging.getLogger("medrelay.keys")

MAX_ORGANIZATIONS = 100
MAX_BLIND_INDEX_VALUE_BYTES = 2048
MAX_SIGNATURE_BYTES = 256
DIGEST_BYTES = 32
DATA_KEY_BYTES = 32
REWRAP_BATCH = 100
_KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


class KeysServicer(pb_grpc.KeysServiceServicer):
    """KeysService over a transit engine and the wraps store."""

    def __init__(self, engine: TransitEngine, store: KeysStore, *, key_prefix: str) -> None:
        self._engine = engine
        self._store = store
        self._prefix = key_prefix

    # --- data keys -------------------------------------------------------------------------

    async def GenerateDataKey(
        self, request: pb.GenerateDataKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.GenerateDataKeyResponse:
        document_id = check.resource_id(request.document_id, "document_id")
        organizations = _organizations(request.organization_ids, "organization_ids", minimum=1)
        if await self._store.document_exists(document_id):
            raise already_exists("DataKey")  # early: the insert below decides, under races
        await self._ensure_keks(organizations)
        first, *others = organizations
        with engine_errors(self._engine.backend_name, "data key"):
            data_key, first_ciphertext = await self._engine.generate_data_key(
                self._kek(first), naming.wrap_context(document_id, first)
            )
            _check_data_key(data_key, "data key")
            ciphertexts = [first_ciphertext, *await self._wrap_for(document_id, others, data_key)]
        wraps = [
            _new_wrap(document_id, organization, ciphertext)
            for organization, ciphertext in zip(organizations, ciphertexts, strict=True)
        ]
        event = self._event(
            "keys.data_key.generate", document_id, details={"organizations": len(wraps)}
        )
        stored = await self._store.create_document(wraps, event)
        return pb.GenerateDataKeyResponse(data_key=data_key, wraps=[_key_wrap(w) for w in stored])

    async def UnwrapDataKey(
        self, request: pb.UnwrapDataKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.UnwrapDataKeyResponse:
        document_id = check.resource_id(request.document_id, "document_id")
        organization_id = check.resource_id(request.organization_id, "organization_id")
        caller = current_caller()
        refusal = _Refusal(self._store, caller, document_id, organization_id)
        if not RELEASE_TO.matches(caller):
            raise await refusal(
                permission_denied(
                    ErrorReason.ERROR_REASON_CALLER_NOT_ALLOWED,
                    "only the exchange service may receive a data key",
                )
            )
        wrap = await self._store.wrap(document_id, organization_id)
        if wrap is None:
            raise await refusal(await self._missing_wrap_error(document_id, organization_id))
        try:
            with engine_errors(self._engine.backend_name, "wrap"):
                [data_key] = await self._engine.decrypt(
                    self._kek(organization_id),
                    [(wrap.ciphertext, naming.wrap_context(document_id, organization_id))],
                )
            _check_data_key(data_key, "wrap")
        except MedrelayError as exc:
            raise await refusal(exc) from None
        released = await self._store.record_release(
            document_id,
            organization_id,
            self._event(
                "keys.data_key.release",
                document_id,
                details={"organization": organization_id, "version": wrap.key_version},
            ),
        )
        if not released:  # shredded while the engine decrypted: the shred wins
            raise await refusal(shredded())
        return pb.UnwrapDataKeyResponse(data_key=data_key, wrap=_key_wrap(wrap))

    async def Rewrap(
        self, request: pb.RewrapRequest, context: grpc.aio.ServicerContext
    ) -> pb.RewrapResponse:
        """Wrap the document's data key for more organisations, then bring every wrap of the
        document to its organisation's latest key version.

        The source organisation must hold a live wrap (KEY_SHREDDED if it was shredded, also
        concurrently). An organisation whose wrap of this document was shredded is never added
        again: FAILED_PRECONDITION saying its access was shredded, and nothing is written.
        """
        document_id = check.resource_id(request.document_id, "document_id")
        source_id = check.resource_id(request.source_organization_id, "source_organization_id")
        additions = _organizations(request.add_organization_ids, "add_organization_ids")
        source = await self._store.wrap(document_id, source_id)
        if source is None:
            raise await self._missing_wrap_error(document_id, source_id)
        existing = {w.organization_id for w in await self._store.wraps(document_id)}
        new_organizations = [o for o in additions if o not in existing]
        if new_organizations:
            gone = await self._store.shredded_organizations(document_id, new_organizations)
            if gone:
                raise access_shredded(gone[0])
            await self._ensure_keks(new_organizations)
            with engine_errors(self._engine.backend_name, "wrap"):
                [data_key] = await self._engine.decrypt(
                    self._kek(source_id),
                    [(source.ciphertext, naming.wrap_context(document_id, source_id))],
                )
                _check_data_key(data_key, "wrap")
                ciphertexts = await self._wrap_for(document_id, new_organizations, data_key)
            wraps = [
                _new_wrap(document_id, organization, ciphertext)
                for organization, ciphertext in zip(new_organizations, ciphertexts, strict=True)
            ]
            event = self._event("keys.data_key.rewrap", document_id, details={"source": source_id})
            # Re-checks under the document's lock: a Shred may have committed meanwhile.
            await self._store.add_wraps(source, wraps, event)
        await self._refresh_versions(document_id)
        return pb.RewrapResponse(wraps=[_key_wrap(w) for w in await self._store.wraps(document_id)])

    async def Shred(
        self, request: pb.ShredRequest, context: grpc.aio.ServicerContext
    ) -> pb.ShredResponse:
        document_id = check.resource_id(request.document_id, "document_id")
        organization_id = (
            check.resource_id(request.organization_id, "organization_id")
            if request.organization_id
            else None
        )
        event = self._event(
            "keys.wrap.shred", document_id, details={"organization": organization_id or "*"}
        )
        return pb.ShredResponse(
            shredded=await self._store.shred(document_id, organization_id, event)
        )

    # --- organisation keys -----------------------------------------------------------------

    async def RotateKey(
        self, request: pb.RotateKeyRequest, context: grpc.aio.ServicerContext
    ) -> pb.KeyInfo:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        minimum = request.min_decryption_version
        if minimum < 0:
            raise invalid_field("min_decryption_version", "must not be negative")
        name = self._kek(organization_id)
        await self._ensure_keks([organization_id])
        with engine_errors(self._engine.backend_name, "key"):
            before = await self._engine.read_key(name)
        if minimum:
            if minimum > before.latest_version + 1:
                raise invalid_field(
                    "min_decryption_version",
                    f"must be at most the new latest version {before.latest_version + 1}",
                )
            stale = await self._store.count_wraps_below(organization_id, minimum)
            if stale:
                raise failed_precondition(
                    f"{stale} live wraps still use a version below {minimum}; "
                    "run RewrapOrganization first"
                )
        with engine_errors(self._engine.backend_name, "key"):
            info = await self._engine.rotate(name)
        # The key has rotated: from here on, a failure is audited too, with what is known.
        try:
            if minimum:
                with engine_errors(self._engine.backend_name, "key"):
                    try:
                        info = await self._engine.set_min_decryption_version(name, minimum)
                    except ValueError as exc:  # a concurrent rotation moved the bounds
                        raise invalid_field("min_decryption_version", str(exc)) from None
            await self._store.record(
                self._event(
                    "keys.key.rotate",
                    organization_id,
                    resource_type="Organization",
                    details={
                        "latest_version": info.latest_version,
                        "min_decryption_version": info.min_decryption_version,
                    },
                )
            )
        except BaseException as exc:  # also a cancelled call: the rotation happened
            await self._record_failed_rotation(organization_id, info, minimum, exc)
            raise
        return pb.KeyInfo(
            organization_id=organization_id,
            latest_version=info.latest_version,
            min_decryption_version=info.min_decryption_version,
        )

    async def RewrapOrganization(
        self, request: pb.RewrapOrganizationRequest, context: grpc.aio.ServicerContext
    ) -> pb.RewrapOrganizationResponse:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        name = self._kek(organization_id)
        with engine_errors(self._engine.backend_name, "key"):
            info = await self._engine.read_key(name)
        total = 0
        while batch := await self._store.stale_wraps(
            organization_id, info.latest_version, REWRAP_BATCH
        ):
            event = self._event("keys.wrap.rewrap", organization_id, resource_type="Organization")
            total += await self._rewrap_batch(organization_id, batch, event)
        await self._store.record(
            self._event(
                "keys.key.rewrap_all",
                organization_id,
                resource_type="Organization",
                details={"rewrapped": total, "version": info.latest_version},
            )
        )
        return pb.RewrapOrganizationResponse(rewrapped=total, key_version=info.latest_version)

    # --- blind indexes and signatures ------------------------------------------------------

    async def BlindIndex(
        self, request: pb.BlindIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.BlindIndexResponse:
        if not _KIND.match(request.kind):
            raise invalid_field("kind", "must be 1 to 32 lowercase letters, digits or '-'")
        if not request.value:
            raise invalid_field("value", "is required")
        if len(request.value.encode()) > MAX_BLIND_INDEX_VALUE_BYTES:
            raise invalid_field("value", f"is longer than {MAX_BLIND_INDEX_VALUE_BYTES} bytes")
        name = naming.blind_index_key(self._prefix)
        with engine_errors(self._engine.backend_name, "key"):
            await self._engine.ensure_key(name, KeyType.AES256_GCM96)
            mac = await self._engine.hmac(
                name, naming.blind_index_input(request.kind, request.value)
            )
        return pb.BlindIndexResponse(index=mac.hex())

    async def Sign(
        self, request: pb.SignRequest, context: grpc.aio.ServicerContext
    ) -> pb.SignResponse:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        digest = _digest(request.digest)
        name = self._signing(organization_id)
        with engine_errors(self._engine.backend_name, "signature"):
            await self._engine.ensure_key(name, KeyType.ECDSA_P256)
            text = await self._engine.sign(name, digest)
        return pb.SignResponse(
            signature=base64.b64decode(text.split(":", 2)[2]),
            key_version=ciphertext_version(text),
        )

    async def Verify(
        self, request: pb.VerifyRequest, context: grpc.aio.ServicerContext
    ) -> pb.VerifyResponse:
        organization_id = check.resource_id(request.organization_id, "organization_id")
        digest = _digest(request.digest)
        if not request.signature or len(request.signature) > MAX_SIGNATURE_BYTES:
            raise invalid_field("signature", f"must be 1 to {MAX_SIGNATURE_BYTES} bytes")
        if request.key_version < 1:
            raise invalid_field("key_version", "is required (the version Sign returned)")
        text = (
            f"{self._engine.backend_name}:v{request.key_version}:"
            f"{base64.b64encode(request.signature).decode()}"
        )
        with engine_errors(self._engine.backend_name, "signature"):
            valid = await self._engine.verify(self._signing(organization_id), digest, text)
        return pb.VerifyResponse(valid=valid)

    # --- helpers ---------------------------------------------------------------------------

    def _kek(self, organization_id: str) -> str:
        return naming.key_encryption_key(self._prefix, organization_id)

    def _signing(self, organization_id: str) -> str:
        return naming.signing_key(self._prefix, organization_id)

    async def _ensure_keks(self, organizations: Sequence[str]) -> None:
        """Create the organisations' key-encryption keys on first use, concurrently."""
        with engine_errors(self._engine.backend_name, "key"):
            await asyncio.gather(
                *(
                    self._engine.ensure_key(self._kek(o), KeyType.AES256_GCM96)
                    for o in organizations
                )
            )

    async def _wrap_for(
        self, document_id: str, organizations: Sequence[str], data_key: bytes
    ) -> list[str]:
        """One ciphertext per organisation, each under its own key (one request per key)."""
        results = await asyncio.gather(
            *(
                self._engine.encrypt(
                    self._kek(o), [(data_key, naming.wrap_context(document_id, o))]
                )
                for o in organizations
            )
        )
        return [ciphertexts[0] for ciphertexts in results]

    async def _refresh_versions(self, document_id: str) -> None:
        """Re-wrap the document's wraps that an older key version made (after a rotation)."""
        for wrap in await self._store.wraps(document_id):
            with engine_errors(self._engine.backend_name, "wrap"):
                info = await self._engine.read_key(self._kek(wrap.organization_id))
            if wrap.key_version < info.latest_version:
                event = self._event(
                    "keys.wrap.rewrap", document_id, details={"organization": wrap.organization_id}
                )
                await self._rewrap_batch(wrap.organization_id, [wrap], event)

    async def _rewrap_batch(
        self, organization_id: str, batch: Sequence[StoredWrap], event: audit.AuditEvent
    ) -> int:
        """Re-encrypt wraps of one organisation in one engine request and store them with one
        audit record (`event` with the version and the count); returns rows updated."""
        items = [(w.ciphertext, naming.wrap_context(w.document_id, organization_id)) for w in batch]
        with engine_errors(self._engine.backend_name, "wrap"):
            ciphertexts = await self._engine.rewrap(self._kek(organization_id), items)
            updated = [
                StoredWrap(w.document_id, organization_id, ciphertext_version(c), c, w.create_time)
                for w, c in zip(batch, ciphertexts, strict=True)
            ]
        version = max(w.key_version for w in updated)
        return await self._store.replace_ciphertexts(updated, event.with_details(version=version))

    async def _record_failed_rotation(
        self, organization_id: str, info: KeyInfo, minimum: int, exc: BaseException
    ) -> None:
        """Best effort: an error record of a rotation that happened but did not finish."""
        reason = (
            exc.reason_name
            if isinstance(exc, MedrelayError)
            else ErrorReason.Name(ErrorReason.ERROR_REASON_INTERNAL)
        )
        event = self._event(
            "keys.key.rotate",
            organization_id,
            resource_type="Organization",
            outcome="error",
            reason=reason,
            details={
                "latest_version": info.latest_version,
                "min_decryption_version": info.min_decryption_version,
                "requested_min_decryption_version": minimum,
            },
        )
        try:
            await self._store.record(event)
        except Exception as failure:
            _LOG.error(
                "could not audit a failed key rotation",
                extra={
                    "organization": organization_id,
                    "latest_version": info.latest_version,
                    "error_type": type(failure).__name__,
                },
            )

    async def _missing_wrap_error(self, document_id: str, organization_id: str) -> MedrelayError:
        """Why there is no wrap: shredded, another organisation's document, or no such key."""
        if await self._store.is_shredded(document_id, organization_id):
            return shredded()
        if await self._store.document_exists(document_id):
            return wrap_mismatch("the organisation holds no wrap of this document")
        return not_found("DataKey")

    def _event(
        self,
        action: str,
        resource_id: str,
        *,
        resource_type: str = "Document",
        outcome: str = "success",
        reason: str = "",
        details: dict[str, audit.DetailValue] | None = None,
    ) -> audit.AuditEvent:
        return audit.AuditEvent(
            actor=current_caller().uri,
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            outcome=outcome,
            reason=reason,
            details=details or {},
        )


class _Refusal:
    """Records a refused release in the ledger, then hands the error back to be raised."""

    def __init__(
        self, store: KeysStore, caller: PeerIdentity, document_id: str, organization_id: str
    ) -> None:
        self._store = store
        self._caller = caller
        self._document_id = document_id
        self._organization_id = organization_id

    async def __call__(self, error: MedrelayError) -> MedrelayError:
        denied = error.code in {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}
        await self._store.record(
            audit.AuditEvent(
                actor=self._caller.uri,
                action="keys.data_key.release",
                resource_type="Document",
                resource_id=self._document_id,
                outcome="denied" if denied else "error",
                reason=error.reason_name,
                details={"organization": self._organization_id},
            )
        )
        return error


def _organizations(values: Sequence[str], field: str, *, minimum: int = 0) -> list[str]:
    if len(values) < minimum:
        raise invalid_field(field, f"needs at least {minimum} organisation")
    if len(values) > MAX_ORGANIZATIONS:
        raise invalid_field(field, f"has more than {MAX_ORGANIZATIONS} organisations")
    checked = [check.resource_id(v, f"{field}[{i}]") for i, v in enumerate(values)]
    if len(set(checked)) != len(checked):
        raise invalid_field(field, "names an organisation twice")
    return checked


def _check_data_key(data_key: bytes, what: str) -> None:
    """A data key from the engine must be 256 bits: anything else is a damaged answer (Vault's
    decrypt answering without a plaintext reads as b""), never a key to hand out or re-wrap."""
    if len(data_key) != DATA_KEY_BYTES:
        raise integrity_failed(what)


def _digest(value: bytes) -> bytes:
    if len(value) != DIGEST_BYTES:
        raise invalid_field("digest", f"must be a {DIGEST_BYTES}-byte SHA-256 digest")
    return value


def _new_wrap(document_id: str, organization_id: str, ciphertext: str) -> StoredWrap:
    return StoredWrap(
        document_id, organization_id, ciphertext_version(ciphertext), ciphertext, datetime.now(UTC)
    )


def _key_wrap(wrap: StoredWrap) -> pb.KeyWrap:
    return pb.KeyWrap(
        organization_id=wrap.organization_id,
        key_version=wrap.key_version,
        create_time=check.to_timestamp(wrap.create_time),
    )


def definition(
    servicer: KeysServicer, on_stop: Callable[[], Awaitable[None]] | None = None
) -> ServiceDefinition:
    """What create_server needs to serve the keys service."""
    return ServiceDefinition(
        name="keys",
        access=ACCESS,
        add_to_server=lambda server: pb_grpc.add_KeysServiceServicer_to_server(servicer, server),
        on_stop=on_stop,
    )
