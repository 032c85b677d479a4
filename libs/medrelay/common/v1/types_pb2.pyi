import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PatientIdentifier(_message.Message):
    __slots__ = ("system", "value")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    system: str
    value: str
    def __init__(self, system: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Coding(_message.Message):
    __slots__ = ("system", "code", "display")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_FIELD_NUMBER: _ClassVar[int]
    system: str
    code: str
    display: str
    def __init__(self, system: _Optional[str] = ..., code: _Optional[str] = ..., display: _Optional[str] = ...) -> None: ...

class Period(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    def __init__(self, start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class RecipientRef(_message.Message):
    __slots__ = ("practitioner_id", "organization_id", "care_team_id", "via_organization_id")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    VIA_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    organization_id: str
    care_team_id: str
    via_organization_id: str
    def __init__(self, practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., care_team_id: _Optional[str] = ..., via_organization_id: _Optional[str] = ...) -> None: ...
