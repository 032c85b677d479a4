"""Who may call which keys RPC. Anything not listed is refused.

UnwrapDataKey is open to every authenticated caller on purpose: the release policy is checked
by the servicer itself (only the exchange service may receive a data key), so that every
refusal is audited in the keys ledger, not only refused by the interceptor.
"""

from medrelay.access import ADMIN, SYSTEM, AccessTable, Caller, service
from medrelay.spiffe import IdentityKind

SERVICE_NAME = "medrelay.keys.v1.KeysService"

ANY_SERVICE = Caller(IdentityKind.SERVICE)
#: The only caller a data key is ever released to.
RELEASE_TO = service("exchange")
#: The only signer: the exchange service alone knows a document's authorised sending
#: organisation, so no other service can sign in an organisation's name.
SIGNER = service("exchange")

ACCESS = AccessTable(
    SERVICE_NAME,
    {
        "GenerateDataKey": (RELEASE_TO,),
        "UnwrapDataKey": (ADMIN, SYSTEM, ANY_SERVICE),
        "Rewrap": (RELEASE_TO,),
        "Shred": (RELEASE_TO, ADMIN),
        "RotateKey": (ADMIN,),
        "RewrapOrganization": (ADMIN,),
        # Services index patient identifiers; nobody else may turn identifiers into indexes.
        "BlindIndex": (
            service("identity"),
            service("consent"),
            service("exchange"),
            service("gateway"),
        ),
        # Documents are signed by the exchange service for their sender; anyone may verify.
        "Sign": (SIGNER,),
        "Verify": (ADMIN, SYSTEM, ANY_SERVICE),
    },
)
