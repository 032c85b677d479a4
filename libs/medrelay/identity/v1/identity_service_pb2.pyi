import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from medrelay.common.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LicenceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LICENCE_STATUS_UNSPECIFIED: _ClassVar[LicenceStatus]
    LICENCE_STATUS_UNVERIFIED: _ClassVar[LicenceStatus]
    LICENCE_STATUS_VERIFIED: _ClassVar[LicenceStatus]
    LICENCE_STATUS_SUSPENDED: _ClassVar[LicenceStatus]
    LICENCE_STATUS_REVOKED: _ClassVar[LicenceStatus]
LICENCE_STATUS_UNSPECIFIED: LicenceStatus
LICENCE_STATUS_UNVERIFIED: LicenceStatus
LICENCE_STATUS_VERIFIED: LicenceStatus
LICENCE_STATUS_SUSPENDED: LicenceStatus
LICENCE_STATUS_REVOKED: LicenceStatus

class Identifier(_message.Message):
    __slots__ = ("system", "value")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    system: str
    value: str
    def __init__(self, system: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class Organization(_message.Message):
    __slots__ = ("id", "display_name", "identifiers", "active", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    identifiers: _containers.RepeatedCompositeFieldContainer[Identifier]
    active: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., identifiers: _Optional[_Iterable[_Union[Identifier, _Mapping]]] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class System(_message.Message):
    __slots__ = ("id", "organization_id", "display_name", "spiffe_id", "active", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    organization_id: str
    display_name: str
    spiffe_id: str
    active: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., organization_id: _Optional[str] = ..., display_name: _Optional[str] = ..., spiffe_id: _Optional[str] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Licence(_message.Message):
    __slots__ = ("registry", "number", "status", "verify_time")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_TIME_FIELD_NUMBER: _ClassVar[int]
    registry: str
    number: str
    status: LicenceStatus
    verify_time: _timestamp_pb2.Timestamp
    def __init__(self, registry: _Optional[str] = ..., number: _Optional[str] = ..., status: _Optional[_Union[LicenceStatus, str]] = ..., verify_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Practitioner(_message.Message):
    __slots__ = ("id", "family_name", "given_name", "licence", "active", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_NAME_FIELD_NUMBER: _ClassVar[int]
    GIVEN_NAME_FIELD_NUMBER: _ClassVar[int]
    LICENCE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    family_name: str
    given_name: str
    licence: Licence
    active: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., family_name: _Optional[str] = ..., given_name: _Optional[str] = ..., licence: _Optional[_Union[Licence, _Mapping]] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Membership(_message.Message):
    __slots__ = ("id", "practitioner_id", "organization_id", "role", "specialty", "validity", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SPECIALTY_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    practitioner_id: str
    organization_id: str
    role: _types_pb2.Coding
    specialty: _types_pb2.Coding
    validity: _types_pb2.Period
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., role: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., specialty: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., validity: _Optional[_Union[_types_pb2.Period, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CareTeamMember(_message.Message):
    __slots__ = ("practitioner_id", "validity")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    validity: _types_pb2.Period
    def __init__(self, practitioner_id: _Optional[str] = ..., validity: _Optional[_Union[_types_pb2.Period, _Mapping]] = ...) -> None: ...

class CareTeam(_message.Message):
    __slots__ = ("id", "managing_organization_id", "display_name", "patient_index", "members", "active", "create_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    MANAGING_ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    PATIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    managing_organization_id: str
    display_name: str
    patient_index: str
    members: _containers.RepeatedCompositeFieldContainer[CareTeamMember]
    active: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., managing_organization_id: _Optional[str] = ..., display_name: _Optional[str] = ..., patient_index: _Optional[str] = ..., members: _Optional[_Iterable[_Union[CareTeamMember, _Mapping]]] = ..., active: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuthorizeRequest(_message.Message):
    __slots__ = ("practitioner_id", "system_spiffe_id")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    system_spiffe_id: str
    def __init__(self, practitioner_id: _Optional[str] = ..., system_spiffe_id: _Optional[str] = ...) -> None: ...

class AuthorizeResponse(_message.Message):
    __slots__ = ("principal",)
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    principal: Principal
    def __init__(self, principal: _Optional[_Union[Principal, _Mapping]] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("practitioner_id", "organization_id", "system_id", "membership_id", "role", "specialty", "valid_until")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    SPECIALTY_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    organization_id: str
    system_id: str
    membership_id: str
    role: _types_pb2.Coding
    specialty: _types_pb2.Coding
    valid_until: _timestamp_pb2.Timestamp
    def __init__(self, practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., system_id: _Optional[str] = ..., membership_id: _Optional[str] = ..., role: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., specialty: _Optional[_Union[_types_pb2.Coding, _Mapping]] = ..., valid_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ResolveRecipientsRequest(_message.Message):
    __slots__ = ("recipients",)
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    recipients: _containers.RepeatedCompositeFieldContainer[_types_pb2.RecipientRef]
    def __init__(self, recipients: _Optional[_Iterable[_Union[_types_pb2.RecipientRef, _Mapping]]] = ...) -> None: ...

class ResolveRecipientsResponse(_message.Message):
    __slots__ = ("recipients", "dropped", "organization_ids")
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_IDS_FIELD_NUMBER: _ClassVar[int]
    recipients: _containers.RepeatedCompositeFieldContainer[ResolvedRecipient]
    dropped: _containers.RepeatedCompositeFieldContainer[DroppedRecipient]
    organization_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, recipients: _Optional[_Iterable[_Union[ResolvedRecipient, _Mapping]]] = ..., dropped: _Optional[_Iterable[_Union[DroppedRecipient, _Mapping]]] = ..., organization_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolvedRecipient(_message.Message):
    __slots__ = ("practitioner_id", "organization_id", "source_index")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    organization_id: str
    source_index: int
    def __init__(self, practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., source_index: _Optional[int] = ...) -> None: ...

class DroppedRecipient(_message.Message):
    __slots__ = ("recipient", "source_index", "reason")
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    recipient: _types_pb2.RecipientRef
    source_index: int
    reason: str
    def __init__(self, recipient: _Optional[_Union[_types_pb2.RecipientRef, _Mapping]] = ..., source_index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CreateOrganizationRequest(_message.Message):
    __slots__ = ("organization_id", "organization")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    organization: Organization
    def __init__(self, organization_id: _Optional[str] = ..., organization: _Optional[_Union[Organization, _Mapping]] = ...) -> None: ...

class GetOrganizationRequest(_message.Message):
    __slots__ = ("organization_id",)
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    def __init__(self, organization_id: _Optional[str] = ...) -> None: ...

class ListOrganizationsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListOrganizationsResponse(_message.Message):
    __slots__ = ("organizations", "next_page_token")
    ORGANIZATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organizations: _containers.RepeatedCompositeFieldContainer[Organization]
    next_page_token: str
    def __init__(self, organizations: _Optional[_Iterable[_Union[Organization, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateOrganizationRequest(_message.Message):
    __slots__ = ("organization", "update_mask")
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    organization: Organization
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, organization: _Optional[_Union[Organization, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class CreateSystemRequest(_message.Message):
    __slots__ = ("organization_id", "system_id", "system")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    system_id: str
    system: System
    def __init__(self, organization_id: _Optional[str] = ..., system_id: _Optional[str] = ..., system: _Optional[_Union[System, _Mapping]] = ...) -> None: ...

class GetSystemRequest(_message.Message):
    __slots__ = ("organization_id", "system_id")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    system_id: str
    def __init__(self, organization_id: _Optional[str] = ..., system_id: _Optional[str] = ...) -> None: ...

class ListSystemsRequest(_message.Message):
    __slots__ = ("organization_id", "page_size", "page_token")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    page_size: int
    page_token: str
    def __init__(self, organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSystemsResponse(_message.Message):
    __slots__ = ("systems", "next_page_token")
    SYSTEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    systems: _containers.RepeatedCompositeFieldContainer[System]
    next_page_token: str
    def __init__(self, systems: _Optional[_Iterable[_Union[System, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateSystemRequest(_message.Message):
    __slots__ = ("system", "update_mask")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    system: System
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, system: _Optional[_Union[System, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class CreatePractitionerRequest(_message.Message):
    __slots__ = ("practitioner_id", "practitioner")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    practitioner: Practitioner
    def __init__(self, practitioner_id: _Optional[str] = ..., practitioner: _Optional[_Union[Practitioner, _Mapping]] = ...) -> None: ...

class GetPractitionerRequest(_message.Message):
    __slots__ = ("practitioner_id",)
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    def __init__(self, practitioner_id: _Optional[str] = ...) -> None: ...

class ListPractitionersRequest(_message.Message):
    __slots__ = ("organization_id", "page_size", "page_token")
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    organization_id: str
    page_size: int
    page_token: str
    def __init__(self, organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPractitionersResponse(_message.Message):
    __slots__ = ("practitioners", "next_page_token")
    PRACTITIONERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    practitioners: _containers.RepeatedCompositeFieldContainer[Practitioner]
    next_page_token: str
    def __init__(self, practitioners: _Optional[_Iterable[_Union[Practitioner, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdatePractitionerRequest(_message.Message):
    __slots__ = ("practitioner", "update_mask")
    PRACTITIONER_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    practitioner: Practitioner
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, practitioner: _Optional[_Union[Practitioner, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class VerifyLicenceRequest(_message.Message):
    __slots__ = ("practitioner_id", "status", "verify_time")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_TIME_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    status: LicenceStatus
    verify_time: _timestamp_pb2.Timestamp
    def __init__(self, practitioner_id: _Optional[str] = ..., status: _Optional[_Union[LicenceStatus, str]] = ..., verify_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateMembershipRequest(_message.Message):
    __slots__ = ("membership",)
    MEMBERSHIP_FIELD_NUMBER: _ClassVar[int]
    membership: Membership
    def __init__(self, membership: _Optional[_Union[Membership, _Mapping]] = ...) -> None: ...

class GetMembershipRequest(_message.Message):
    __slots__ = ("membership_id",)
    MEMBERSHIP_ID_FIELD_NUMBER: _ClassVar[int]
    membership_id: str
    def __init__(self, membership_id: _Optional[str] = ...) -> None: ...

class ListMembershipsRequest(_message.Message):
    __slots__ = ("practitioner_id", "organization_id", "page_size", "page_token")
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    practitioner_id: str
    organization_id: str
    page_size: int
    page_token: str
    def __init__(self, practitioner_id: _Optional[str] = ..., organization_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMembershipsResponse(_message.Message):
    __slots__ = ("memberships", "next_page_token")
    MEMBERSHIPS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    memberships: _containers.RepeatedCompositeFieldContainer[Membership]
    next_page_token: str
    def __init__(self, memberships: _Optional[_Iterable[_Union[Membership, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class EndMembershipRequest(_message.Message):
    __slots__ = ("membership_id", "end_time")
    MEMBERSHIP_ID_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    membership_id: str
    end_time: _timestamp_pb2.Timestamp
    def __init__(self, membership_id: _Optional[str] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCareTeamRequest(_message.Message):
    __slots__ = ("care_team_id", "care_team", "patient")
    CARE_TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    CARE_TEAM_FIELD_NUMBER: _ClassVar[int]
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    care_team_id: str
    care_team: CareTeam
    patient: _types_pb2.PatientIdentifier
    def __init__(self, care_team_id: _Optional[str] = ..., care_team: _Optional[_Union[CareTeam, _Mapping]] = ..., patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ...) -> None: ...

class GetCareTeamRequest(_message.Message):
    __slots__ = ("care_team_id",)
    CARE_TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    care_team_id: str
    def __init__(self, care_team_id: _Optional[str] = ...) -> None: ...

class ListCareTeamsRequest(_message.Message):
    __slots__ = ("patient", "member_practitioner_id", "page_size", "page_token", "patient_index")
    PATIENT_FIELD_NUMBER: _ClassVar[int]
    MEMBER_PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PATIENT_INDEX_FIELD_NUMBER: _ClassVar[int]
    patient: _types_pb2.PatientIdentifier
    member_practitioner_id: str
    page_size: int
    page_token: str
    patient_index: str
    def __init__(self, patient: _Optional[_Union[_types_pb2.PatientIdentifier, _Mapping]] = ..., member_practitioner_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., patient_index: _Optional[str] = ...) -> None: ...

class ListCareTeamsResponse(_message.Message):
    __slots__ = ("care_teams", "next_page_token")
    CARE_TEAMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    care_teams: _containers.RepeatedCompositeFieldContainer[CareTeam]
    next_page_token: str
    def __init__(self, care_teams: _Optional[_Iterable[_Union[CareTeam, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddCareTeamMemberRequest(_message.Message):
    __slots__ = ("care_team_id", "member")
    CARE_TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    care_team_id: str
    member: CareTeamMember
    def __init__(self, care_team_id: _Optional[str] = ..., member: _Optional[_Union[CareTeamMember, _Mapping]] = ...) -> None: ...

class RemoveCareTeamMemberRequest(_message.Message):
    __slots__ = ("care_team_id", "practitioner_id")
    CARE_TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    PRACTITIONER_ID_FIELD_NUMBER: _ClassVar[int]
    care_team_id: str
    practitioner_id: str
    def __init__(self, care_team_id: _Optional[str] = ..., practitioner_id: _Optional[str] = ...) -> None: ...
