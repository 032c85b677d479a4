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

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    DECISION_PERMIT: _ClassVar[Decision]
    DECISION_DENY: _ClassVar[Decision]
DECISION_UNSPECIFIED: Decision
DECISION_PERMIT: Decision
DECISION_DENY: Decision

class Actor(_message.Message):
    __slots__ = ("practitioner_id", "organization_id")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    organization_id: str
    def __init__(self, practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ...) -> None: ...

class CheckRequest(_message.Message):
    __slots__ = ("patient", "actor", "purpose", "data_classes", "at", "justification", "patient_index", "deidentified")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    DATA_CLASSES_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    PATIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    DEIDENTIFIED_FIELD_NUMBER: _ClassVar[int]
    patient: _types_pb2.PatientIdentifier
    actor: Actor
    purpose: str
    data_classes: _containers.RepeatedScalarFieldContainer[str]
    at: _timestamp_pb2.Timestamp
    justification: str
    patient_index: str
    deidentified: bool
    def __init__(self, patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., purpose: _Optional[str] = ..., data_classes: _Optional[_Iterable[str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., justification: _Optional[str] = ..., patient_index: _Optional[str] = ..., deidentified: _Optional[bool] = ...) -> None: ...

class Obligation(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class CheckResponse(_message.Message):
    __slots__ = ("decision", "decided_by", "reason", "obligations", "emergency_access_id")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OBLIGATIONS_FIELD_NUMBER: _ClassVar[int]
    EMERGENCY_ACCESS_ID_FIELD_NUMBER: _ClassVar[int]
    decision: Decision
    decided_by: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    obligations: _containers.RepeatedCompositeFieldContainer[Obligation]
    emergency_access_id: str
    def __init__(self, decision: _Optional[_Union[Decision, str]] = ..., decided_by: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., obligations: _Optional[_Iterable[_Union[Obligation, _Mapping]]] = ..., emergency_access_id: _Optional[str] = ...) -> None: ...

class ConsentRecord(_message.Message):
    __slots__ = ("id", "version", "patient_index", "status", "fhir_json", "record_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FHIR_JSON_FIELD_NUMBER: _ClassVar[int]
    RECORD_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    patient_index: str
    status: str
    fhir_json: str
    record_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., patient_index: _Optional[str] = ..., status: _Optional[str] = ..., fhir_json: _Optional[str] = ..., record_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecordConsentRequest(_message.Message):
    __slots__ = ("fhir_json",)
    FHIR_JSON_FIELD_NUMBER: _ClassVar[int]
    fhir_json: str
    def __init__(self, fhir_json: _Optional[str] = ...) -> None: ...

class RevokeConsentRequest(_message.Message):
    __slots__ = ("consent_id", "reason")
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    reason: str
    def __init__(self, consent_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class GetConsentRequest(_message.Message):
    __slots__ = ("consent_id", "version")
    CONSENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    consent_id: str
    version: int
    def __init__(self, consent_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ListConsentHistoryRequest(_message.Message):
    __slots__ = ("patient", "page_size", "page_token")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    patient: _types_pb2.PatientIdentifier
    page_size: int
    page_token: str
    def __init__(self, patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConsentHistoryResponse(_message.Message):
    __slots__ = ("consents", "next_page_token")
    CONSENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    consents: _containers.RepeatedCompositeFieldContainer[ConsentRecord]
    next_page_token: str
    def __init__(self, consents: _Optional[_Iterable[_Union[ConsentRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EmergencyAccess(_message.Message):
    __slots__ = ("id", "patient_index", "actor", "justification", "access_time", "review_time", "review_note")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    JUSTIFICATION_FIELD_NUMBER: _ClassVar[int]
    ACCESS_TIME_FIELD_NUMBER: _ClassVar[int]
    REVIEW_TIME_FIELD_NUMBER: _ClassVar[int]
    REVIEW_NOTE_FIELD_NUMBER: _ClassVar[int]
    id: str
    patient_index: str
    actor: Actor
    justification: str
    access_time: _timestamp_pb2.Timestamp
    review_time: _timestamp_pb2.Timestamp
    review_note: str
    def __init__(self, id: _Optional[str] = ..., patient_index: _Optional[str] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., justification: _Optional[str] = ..., access_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., review_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., review_note: _Optional[str] = ...) -> None: ...

class ListEmergencyAccessesRequest(_message.Message):
    __slots__ = ("open_only", "page_size", "page_token")
    OPEN_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    open_only: bool
    page_size: int
    page_token: str
    def __init__(self, open_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListEmergencyAccessesResponse(_message.Message):
    __slots__ = ("accesses", "next_page_token")
    ACCESSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    accesses: _containers.RepeatedCompositeFieldContainer[EmergencyAccess]
    next_page_token: str
    def __init__(self, accesses: _Optional[_Iterable[_Union[EmergencyAccess, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CloseEmergencyAccessReviewRequest(_message.Message):
    __slots__ = ("emergency_access_id", "review_note")
    EMERGENCY_ACCESS_ID_FIELD_NUMBER: _ClassVar[int]
    REVIEW_NOTE_FIELD_NUMBER: _ClassVar[int]
    emergency_access_id: str
    review_note: str
    def __init__(self, emergency_access_id: _Optional[str] = ..., review_note: _Optional[str] = ...) -> None: ...
