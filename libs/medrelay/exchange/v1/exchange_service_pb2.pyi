import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from medrelay.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DELIVERY_STATE_UNSPECIFIED: _ClassVar[DeliveryState]
    DELIVERY_STATE_DELIVERED: _ClassVar[DeliveryState]
    DELIVERY_STATE_FETCHED: _ClassVar[DeliveryState]
    DELIVERY_STATE_READ: _ClassVar[DeliveryState]
    DELIVERY_STATE_REVOKED: _ClassVar[DeliveryState]

class NoticeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_KIND_UNSPECIFIED: _ClassVar[NoticeKind]
    NOTICE_KIND_NON_DELIVERY: _ClassVar[NoticeKind]

class AccessOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCESS_OUTCOME_UNSPECIFIED: _ClassVar[AccessOutcome]
    ACCESS_OUTCOME_SUCCESS: _ClassVar[AccessOutcome]
    ACCESS_OUTCOME_DENIED: _ClassVar[AccessOutcome]
    ACCESS_OUTCOME_ERROR: _ClassVar[AccessOutcome]
DELIVERY_STATE_UNSPECIFIED: DeliveryState
DELIVERY_STATE_DELIVERED: DeliveryState
DELIVERY_STATE_FETCHED: DeliveryState
DELIVERY_STATE_READ: DeliveryState
DELIVERY_STATE_REVOKED: DeliveryState
NOTICE_KIND_UNSPECIFIED: NoticeKind
NOTICE_KIND_NON_DELIVERY: NoticeKind
ACCESS_OUTCOME_UNSPECIFIED: AccessOutcome
ACCESS_OUTCOME_SUCCESS: AccessOutcome
ACCESS_OUTCOME_DENIED: AccessOutcome
ACCESS_OUTCOME_ERROR: AccessOutcome

class DocumentHeader(_message.Message):
    __slots__ = ("request_id", "practitioner_id", "patient", "recipients", "type", "specialty", "title", "content_type", "note", "size_bytes", "purpose", "data_classes", "deidentify", "case_label")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPECIALTY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DATA_CLASSES_FIELD_NUMBER: _ClassVar[int]
    DEIDENTIFY_FIELD_NUMBER: _ClassVar[int]
    CASE_LABEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    practitioner_id: str
    patient: _types_pb2.PatientIdentifier
    recipients: _containers.RepeatedCompositeFieldContainer[_types_pb2.RecipientRef]
    type: _types_pb2.Coding
    specialty: _types_pb2.Coding
    title: str
    content_type: str
    note: str
    size_bytes: int
    purpose: str
    data_classes: _containers.RepeatedScalarFieldContainer[str]
    deidentify: bool
    case_label: str
    def __init__(self, request_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ..., patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ..., recipients: _Optional[_Iterable[_Union[_types_pb2.RecipientRef, _Mapping]]] = ..., type: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., specialty: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., note: _Optional[str] = ..., size_bytes: _Optional[int] = ..., purpose: _Optional[str] = ..., data_classes: _Optional[_Iterable[str]] = ..., deidentify: _Optional[bool] = ..., case_label: _Optional[str] = ...) -> None: ...

class SendDocumentRequest(_message.Message):
    __slots__ = ("header", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: DocumentHeader
    chunk: bytes
    def __init__(self, header: _Optional[_Union[DocumentHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("practitioner_id", "organization_id", "state", "update_time", "forwarded_by_practitioner_id", "care_team_id", "forward_id")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FORWARDED_BY_PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    FORWARD_ID_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    organization_id: str
    state: DeliveryState
    update_time: _timestamp_pb2.Timestamp
    forwarded_by_practitioner_id: str
    care_team_id: str
    forward_id: str
    def __init__(self, practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., state: _Optional[_Union[DeliveryState, str]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., forwarded_by_practitioner_id: _Optional[str] = ..., care_team_id: _Optional[str] = ..., forward_id: _Optional[str] = ...) -> None: ...

class Forward(_message.Message):
    __slots__ = ("id", "practitioner_id", "organization_id", "recipients", "create_time", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    practitioner_id: str
    organization_id: str
    recipients: _containers.RepeatedCompositeFieldContainer[_types_pb2.RecipientRef]
    create_time: _timestamp_pb2.Timestamp
    note: str
    def __init__(self, id: _Optional[str] = ..., practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., recipients: _Optional[_Iterable[_Union[_types_pb2.RecipientRef, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "header", "sender_organization_id", "deliveries", "create_time", "expire_time", "size_bytes", "recalled", "forwards", "recall_reason", "expired")
    ID_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SENDER_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECALLED_FIELD_NUMBER: _ClassVar[int]
    FORWARDS_FIELD_NUMBER: _ClassVar[int]
    RECALL_REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRED_FIELD_NUMBER: _ClassVar[int]
    id: str
    header: DocumentHeader
    sender_organization_id: str
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    size_bytes: int
    recalled: bool
    forwards: _containers.RepeatedCompositeFieldContainer[Forward]
    recall_reason: str
    expired: bool
    def __init__(self, id: _Optional[str] = ..., header: _Optional[_Union[DocumentHeader, _Mapping]] = ..., sender_organization_id: _Optional[str] = ..., deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., size_bytes: _Optional[int] = ..., recalled: _Optional[bool] = ..., forwards: _Optional[_Iterable[_Union[Forward, _Mapping]]] = ..., recall_reason: _Optional[str] = ..., expired: _Optional[bool] = ...) -> None: ...

class ListInboxRequest(_message.Message):
    __slots__ = ("practitioner_id", "patient", "type", "specialty", "sent_after", "sent_before", "unread_only", "page_size", "page_token")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPECIALTY_FIELD_NUMBER: _ClassVar[int]
    SENT_AFTER_FIELD_NUMBER: _ClassVar[int]
    SENT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    UNREAD_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    patient: _types_pb2.PatientIdentifier
    type: _types_pb2.Coding
    specialty: _types_pb2.Coding
    sent_after: _timestamp_pb2.Timestamp
    sent_before: _timestamp_pb2.Timestamp
    unread_only: bool
    page_size: int
    page_token: str
    def __init__(self, practitioner_id: _Optional[str] = ..., patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ..., type: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., specialty: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., sent_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sent_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unread_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInboxResponse(_message.Message):
    __slots__ = ("documents", "next_page_token")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    next_page_token: str
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class FetchDocumentRequest(_message.Message):
    __slots__ = ("document_id", "practitioner_id", "purpose", "justification")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    practitioner_id: str
    purpose: str
    justification: str
    def __init__(self, document_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ..., purpose: _Optional[str] = ..., justification: _Optional[str] = ...) -> None: ...

class FetchTrailer(_message.Message):
    __slots__ = ("sha256", "signature_valid")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_VALID_FIELD_NUMBER: _ClassVar[int]
    sha256: bytes
    signature_valid: bool
    def __init__(self, sha256: _Optional[bytes] = ..., signature_valid: _Optional[bool] = ...) -> None: ...

class FetchDocumentResponse(_message.Message):
    __slots__ = ("document", "chunk", "trailer")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    document: Document
    chunk: bytes
    trailer: FetchTrailer
    def __init__(self, document: _Optional[_Union[Document, _Mapping]] = ..., chunk: _Optional[bytes] = ..., trailer: _Optional[_Union[FetchTrailer, _Mapping]] = ...) -> None: ...

class AcknowledgeDocumentRequest(_message.Message):
    __slots__ = ("document_id", "practitioner_id")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    practitioner_id: str
    def __init__(self, document_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ...) -> None: ...

class ForwardDocumentRequest(_message.Message):
    __slots__ = ("document_id", "practitioner_id", "recipients", "note")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    practitioner_id: str
    recipients: _containers.RepeatedCompositeFieldContainer[_types_pb2.RecipientRef]
    note: str
    def __init__(self, document_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ..., recipients: _Optional[_Iterable[_Union[_types_pb2.RecipientRef, _Mapping]]] = ..., note: _Optional[str] = ...) -> None: ...

class RecallDocumentRequest(_message.Message):
    __slots__ = ("document_id", "practitioner_id", "reason")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    practitioner_id: str
    reason: str
    def __init__(self, document_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("document_id", "practitioner_id")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    practitioner_id: str
    def __init__(self, document_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ...) -> None: ...

class ListNoticesRequest(_message.Message):
    __slots__ = ("practitioner_id", "page_size", "page_token")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    page_size: int
    page_token: str
    def __init__(self, practitioner_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("id", "document_id", "kind", "delivery", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    document_id: str
    kind: NoticeKind
    delivery: Delivery
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., document_id: _Optional[str] = ..., kind: _Optional[_Union[NoticeKind, str]] = ..., delivery: _Optional[_Union[Delivery, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListNoticesResponse(_message.Message):
    __slots__ = ("notices", "next_page_token")
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    notices: _containers.RepeatedCompositeFieldContainer[Notice]
    next_page_token: str
    def __init__(self, notices: _Optional[_Iterable[_Union[Notice, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListPatientAccessesRequest(_message.Message):
    __slots__ = ("practitioner_id", "patient", "page_size", "page_token")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    patient: _types_pb2.PatientIdentifier
    page_size: int
    page_token: str
    def __init__(self, practitioner_id: _Optional[str] = ..., patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class AccessRecord(_message.Message):
    __slots__ = ("sequence", "occurred_time", "action", "outcome", "reason", "document_id", "actor_practitioner_id", "actor_organization_id", "actor_system", "purpose", "emergency")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    occurred_time: _timestamp_pb2.Timestamp
    action: str
    outcome: AccessOutcome
    reason: str
    document_id: str
    actor_practitioner_id: str
    actor_organization_id: str
    actor_system: str
    purpose: str
    emergency: bool
    def __init__(self, sequence: _Optional[int] = ..., occurred_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., action: _Optional[str] = ..., outcome: _Optional[_Union[AccessOutcome, str]] = ..., reason: _Optional[str] = ..., document_id: _Optional[str] = ..., actor_practitioner_id: _Optional[str] = ..., actor_organization_id: _Optional[str] = ..., actor_system: _Optional[str] = ..., purpose: _Optional[str] = ..., emergency: _Optional[bool] = ...) -> None: ...

class ListPatientAccessesResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AccessRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[AccessRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
