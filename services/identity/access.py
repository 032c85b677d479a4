"""Who may call which identity RPC. Anything not listed is refused."""

from medrelay.access import ADMIN, SYSTEM, AccessTable, service

SERVICE_NAME = "medrelay.identity.v1.IdentityService"

_SERVICES = (service("exchange"), service("consent"), service("gateway"))
_DIRECTORY_READERS = (ADMIN, SYSTEM, *_SERVICES)

ACCESS = AccessTable(
    SERVICE_NAME,
    {
        # A system asks for itself; services relay a system's request.
        "Authorize": (SYSTEM, *_SERVICES),
        "ResolveRecipients": (SYSTEM, service("exchange"), service("gateway")),
        # The directory is readable by every participant.
        "GetOrganization": _DIRECTORY_READERS,
        "ListOrganizations": _DIRECTORY_READERS,
        "GetPractitioner": _DIRECTORY_READERS,
        "ListPractitioners": _DIRECTORY_READERS,
        # Care teams reveal who treats a patient: services and admins only.
        "GetCareTeam": (ADMIN, *_SERVICES),
        "ListCareTeams": (ADMIN, *_SERVICES),
        "GetMembership": (ADMIN, *_SERVICES),
        "ListMemberships": (ADMIN, *_SERVICES),
        "GetSystem": (ADMIN, *_SERVICES),
        "ListSystems": (ADMIN,),
        # Every change is an administrator's, and audited.
        "CreateOrganization": (ADMIN,),
        "UpdateOrganization": (ADMIN,),
        "CreateSystem": (ADMIN,),
        "UpdateSystem": (ADMIN,),
        "CreatePractitioner": (ADMIN,),
        "UpdatePractitioner": (ADMIN,),
        "VerifyLicence": (ADMIN,),
        "CreateMembership": (ADMIN,),
        "EndMembership": (ADMIN,),
        "CreateCareTeam": (ADMIN,),
        "AddCareTeamMember": (ADMIN,),
        "RemoveCareTeamMember": (ADMIN,),
    },
)
