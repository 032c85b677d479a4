import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class KeyWrap(_message.Message):
    __slots__ = ("organization_id", "key_version", "create_time")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    key_version: int
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, organization_id: _Optional[str] = ..., key_version: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GenerateDataKeyRequest(_message.Message):
    __slots__ = ("document_id", "organization_ids")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_IDS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    organization_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, document_id: _Optional[str] = ..., organization_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GenerateDataKeyResponse(_message.Message):
    __slots__ = ("data_key", "wraps")
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    WRAPS_FIELD_NUMBER: _ClassVar[int]
    data_key: bytes
    wraps: _containers.RepeatedCompositeFieldContainer[KeyWrap]
    def __init__(self, data_key: _Optional[bytes] = ..., wraps: _Optional[_Iterable[_Union[KeyWrap, _Mapping]]] = ...) -> None: ...

class UnwrapDataKeyRequest(_message.Message):
    __slots__ = ("document_id", "organization_id")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    organization_id: str
    def __init__(self, document_id: _Optional[str] = ..., organization_id: _Optional[str] = ...) -> None: ...

class UnwrapDataKeyResponse(_message.Message):
    __slots__ = ("data_key", "wrap")
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    WRAP_FIELD_NUMBER: _ClassVar[int]
    data_key: bytes
    wrap: KeyWrap
    def __init__(self, data_key: _Optional[bytes] = ..., wrap: _Optional[_Union[KeyWrap, _Mapping]] = ...) -> None: ...

class RewrapRequest(_message.Message):
    __slots__ = ("document_id", "source_organization_id", "add_organization_ids")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ADD_ORGANIZATION_IDS_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    source_organization_id: str
    add_organization_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, document_id: _Optional[str] = ..., source_organization_id: _Optional[str] = ..., add_organization_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class RewrapResponse(_message.Message):
    __slots__ = ("wraps",)
    WRAPS_FIELD_NUMBER: _ClassVar[int]
    wraps: _containers.RepeatedCompositeFieldContainer[KeyWrap]
    def __init__(self, wraps: _Optional[_Iterable[_Union[KeyWrap, _Mapping]]] = ...) -> None: ...

class RewrapOrganizationRequest(_message.Message):
    __slots__ = ("organization_id",)
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    def __init__(self, organization_id: _Optional[str] = ...) -> None: ...

class RewrapOrganizationResponse(_message.Message):
    __slots__ = ("rewrapped", "key_version")
    REWRAPPED_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    rewrapped: int
    key_version: int
    def __init__(self, rewrapped: _Optional[int] = ..., key_version: _Optional[int] = ...) -> None: ...

class ShredRequest(_message.Message):
    __slots__ = ("document_id", "organization_id")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    organization_id: str
    def __init__(self, document_id: _Optional[str] = ..., organization_id: _Optional[str] = ...) -> None: ...

class ShredResponse(_message.Message):
    __slots__ = ("shredded",)
    SHREDDED_FIELD_NUMBER: _ClassVar[int]
    shredded: int
    def __init__(self, shredded: _Optional[int] = ...) -> None: ...

class RotateKeyRequest(_message.Message):
    __slots__ = ("organization_id", "min_decryption_version")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_DECRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    min_decryption_version: int
    def __init__(self, organization_id: _Optional[str] = ..., min_decryption_version: _Optional[int] = ...) -> None: ...

class KeyInfo(_message.Message):
    __slots__ = ("organization_id", "latest_version", "min_decryption_version")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    LATEST_VERSION_FIELD_NUMBER: _ClassVar[int]
    MIN_DECRYPTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    latest_version: int
    min_decryption_version: int
    def __init__(self, organization_id: _Optional[str] = ..., latest_version: _Optional[int] = ..., min_decryption_version: _Optional[int] = ...) -> None: ...

class BlindIndexRequest(_message.Message):
    __slots__ = ("kind", "value")
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    kind: str
    value: str
    def __init__(self, kind: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class BlindIndexResponse(_message.Message):
    __slots__ = ("index",)
    INDEX_FIELD_NUMBER: _ClassVar[int]
    index: str
    def __init__(self, index: _Optional[str] = ...) -> None: ...

class SignRequest(_message.Message):
    __slots__ = ("organization_id", "digest")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    digest: bytes
    def __init__(self, organization_id: _Optional[str] = ..., digest: _Optional[bytes] = ...) -> None: ...

class SignResponse(_message.Message):
    __slots__ = ("signature", "key_version")
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    signature: bytes
    key_version: int
    def __init__(self, signature: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyRequest(_message.Message):
    __slots__ = ("organization_id", "digest", "signature", "key_version")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    KEY_VERSION_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    digest: bytes
    signature: bytes
    key_version: int
    def __init__(self, organization_id: _Optional[str] = ..., digest: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., key_version: _Optional[int] = ...) -> None: ...

class VerifyResponse(_message.Message):
    __slots__ = ("valid",)
    VALID_FIELD_NUMBER: _ClassVar[int]
    valid: bool
    def __init__(self, valid: _Optional[bool] = ...) -> None: ...
