"""Why a client command failed, as one line that says what to do next.

A person at a terminal (or a script) acts on what medrelay refused, not on how gRPC reports it:
a refusal becomes one line naming the rule and the way out ("practitioner 'dr-b' is not a
member of org-a ...; act through a system of their own organisation"), never a traceback.
The line is built from the stable parts of the error (the status code and the ErrorInfo
reason with its metadata, AIP-193), never from the human message alone, which may change.
Server metadata never holds patient identifiers (errors.proto says so), and nothing here adds
any: a failure line can be pasted into a ticket.

Exit codes: 0 done, 1 refused or failed (by a service, or unreachable), 2 a usage or local
input error (an option, a missing file), 130 interrupted (Ctrl-C), 143 or 129 stopped by
SIGTERM or SIGHUP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc

from medrelay.errors import error_info_from_metadata

REFUSED = 1
USAGE = 2
INTERRUPTED = 130

_PREFIX = "ERROR_REASON_"


class Failure(Exception):
    """Something a command could not do, already phrased for the person who asked.

    `code` and `reason` are the gRPC status name and the ErrorInfo reason when a service
    answered, so `--json` output lets a script act on the stable values.
    """

    def __init__(
        self, message: str, exit_code: int = REFUSED, *, code: str = "", reason: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code
        self.reason = reason


def usage(message: str) -> Failure:
    """A mistake in what was typed (exit 2): an option, a path, a value."""
    return Failure(message, USAGE)


@dataclass(frozen=True)
class Hints:
    """What the command knows that makes a failure line actionable.

    Only values the person typed (ids, not patient identifiers) and where the call went.
    """

    service: str
    address: str
    timeout: float
    #: The caller, as `--as` names it (e.g. org/org-a/system/ehr) or the certificate file.
    caller: str = ""
    practitioner: str = ""
    #: The recipients as typed, in order (RECIPIENT_NOT_ENTITLED names one by index).
    recipients: Sequence[str] = ()
    #: What the call was: "send", "fetch", "forward", ... (a consent refusal reads differently).
    action: str = ""
    #: Maps a request field path ("header.patient") to the option that sets it.
    options: Mapping[str, str] = field(default_factory=dict)
    #: Whose certificate the call needs, said when the caller may not make it.
    needs: str = "an organisation's system certificate (--as org/<organisation>/system/<name>)"


def _reason_words(reason: str) -> str:
    """ERROR_REASON_MEMBERSHIP_EXPIRED -> "membership expired"."""
    return reason.removeprefix(_PREFIX).replace("_", " ").lower()


def _caller_org(caller: str) -> str:
    """The organisation of an `org/<org>/system/<name>` caller, else ''."""
    parts = caller.split("/")
    return parts[1] if len(parts) == 4 and parts[0] == "org" else ""


def _option_for(field_path: str, options: Mapping[str, str]) -> str:
    """The option that set `field_path` (longest matching prefix), or ''."""
    best = ""
    for prefix in options:
        if (field_path == prefix or field_path.startswith((prefix + ".", prefix + "["))) and len(
            prefix
        ) > len(best):
            best = prefix
    return options.get(best, "")


def _size(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if number < 1024 or unit == "GiB":
            return f"{number:.0f} {unit}" if unit == "bytes" else f"{number:.1f} {unit}"
        number /= 1024
    return value  # pragma: no cover - the loop always returns


def _recipient(index_text: str, hints: Hints) -> str:
    try:
        index = int(index_text)
    except ValueError:
        return "a recipient"
    if 0 <= index < len(hints.recipients):
        return f"'{hints.recipients[index]}' (--to number {index + 1})"
    return f"recipient number {index + 1}"


_Explain = Callable[[Mapping[str, str], str, Hints], str]


def _practitioner(hints: Hints) -> str:
    return f"practitioner '{hints.practitioner}'" if hints.practitioner else "the practitioner"


def _system(hints: Hints) -> str:
    return f"the system {hints.caller}" if hints.caller else "this system"


def _org(hints: Hints) -> str:
    org = _caller_org(hints.caller)
    return org if org else "this system's organisation"


def _invalid_field(meta: Mapping[str, str], details: str, hints: Hints) -> str:
    path = meta.get("field", "")
    problem = meta.get("problem", "") or details
    option = _option_for(path, hints.options)
    if option:
        return f"{option}: {path} {problem}; correct {option} and try again"
    if path:
        return f"the {hints.service} service refused {path}: {problem}; correct it and try again"
    return f"the {hints.service} service refused the request: {details}"


def _not_allowed(meta: Mapping[str, str], details: str, hints: Hints) -> str:
    method = meta.get("method", "")
    who = f"the certificate of {hints.caller}" if hints.caller else "this certificate"
    what = f"{method}" if method else "this call"
    return f"{who} may not make {what}; use {hints.needs}"


def _consent_denied(meta: Mapping[str, str], details: str, hints: Hints) -> str:
    index = meta.get("recipient_index")
    if hints.action in ("send", "forward") and index is not None:
        return (
            f"the patient's consent does not allow sending to {_recipient(index, hints)}; "
            "record a consent that allows it (medrelay consent record) or leave them out"
        )
    if hints.action == "fetch":
        return (
            "the patient's consent does not allow you to read this document now; it can be read "
            "again only if the patient consents (or, in an emergency, --purpose ETREAT with "
            "--justification)"
        )
    return "the patient's consent does not allow this; record a consent that permits it first"


def _not_a_recipient(meta: Mapping[str, str], details: str, hints: Hints) -> str:
    cause = meta.get("cause", "")
    if cause == "NO_LONGER_IN_CARE_TEAM":
        return (
            f"{_practitioner(hints)} received this document through a care team they are no "
            "longer in; ask the sender to send it to them directly"
        )
    if cause == "OTHER_ORGANIZATION":
        return (
            f"{_practitioner(hints)} received this document through another organisation; "
            "fetch it through a system of that organisation (--as org/<organisation>/system/...)"
        )
    return f"{_practitioner(hints)} is not a recipient of this document now"


_EXPLAIN: dict[str, _Explain] = {
    "INVALID_FIELD": _invalid_field,
    "CALLER_NOT_ALLOWED": _not_allowed,
    "RESOURCE_NOT_FOUND": lambda m, d, h: (
        f"{m.get('resource_type', 'the resource')} not found (or not yours to see); check the id"
    ),
    "RESOURCE_EXISTS": lambda m, d, h: (
        f"{m.get('resource_type', 'the resource')} already exists; choose another id"
    ),
    "DEPENDENCY_UNAVAILABLE": lambda m, d, h: (
        f"the {h.service} service cannot reach {m.get('dependency', 'a service it needs')}; "
        "try again in a moment, and tell the operators if it lasts"
    ),
    "INVALID_STATE": lambda m, d, h: f"{d}; nothing was changed",
    "INTERNAL": lambda m, d, h: (
        f"the {h.service} service failed unexpectedly (correlation id "
        f"{m.get('correlation_id', 'none')}); give this id to the operators"
    ),
    "DEADLINE_REQUIRED": lambda m, d, h: (
        "the service refused a call without a deadline; this is a bug in medrelay, report it"
    ),
    "UNKNOWN_SYSTEM": lambda m, d, h: (
        f"{_system(h)} is not registered in the directory; ask an administrator to register "
        "it (medrelay directory add-system)"
    ),
    "SYSTEM_INACTIVE": lambda m, d, h: (
        f"{_system(h)} is deactivated; ask an administrator to reactivate it"
    ),
    "ORGANIZATION_INACTIVE": lambda m, d, h: (
        f"the organisation {_org(h)} is deactivated; ask an administrator"
    ),
    "UNKNOWN_PRACTITIONER": lambda m, d, h: (
        f"{_practitioner(h)} is not in the directory; check --practitioner "
        "(medrelay directory practitioners lists them)"
    ),
    "PRACTITIONER_INACTIVE": lambda m, d, h: (
        f"{_practitioner(h)} is deactivated; ask an administrator"
    ),
    "LICENCE_UNVERIFIED": lambda m, d, h: (
        f"the licence of {_practitioner(h)} is not verified (or is suspended or revoked); "
        "ask an administrator to verify it"
    ),
    "NO_MEMBERSHIP": lambda m, d, h: (
        f"{_practitioner(h)} is not a member of {_org(h)}; act through a system of their own "
        "organisation (--as org/<organisation>/system/<name>)"
    ),
    "MEMBERSHIP_NOT_YET_VALID": lambda m, d, h: (
        f"the membership of {_practitioner(h)} in {_org(h)} has not started yet; try again "
        "once it starts"
    ),
    "MEMBERSHIP_EXPIRED": lambda m, d, h: (
        f"the membership of {_practitioner(h)} in {_org(h)} has ended; they can no longer act "
        "for it"
    ),
    "SYSTEM_MISMATCH": lambda m, d, h: (
        "a system may act only for itself; call with the certificate of the system named"
    ),
    # These three are causes inside RECIPIENT_NOT_ENTITLED; explained alone all the same.
    "UNKNOWN_ORGANIZATION": lambda m, d, h: (
        "no such organisation in the directory; check the id (medrelay directory organizations)"
    ),
    "UNKNOWN_CARE_TEAM": lambda m, d, h: "no such care team; check the id",
    "CARE_TEAM_INACTIVE": lambda m, d, h: (
        "the care team is inactive or has no current member; choose other recipients"
    ),
    "CONSENT_DENIED": _consent_denied,
    "EMERGENCY_ACCESS_REFUSED": lambda m, d, h: (
        "the patient has refused emergency access; it cannot be overridden"
    ),
    "INVALID_FHIR": lambda m, d, h: (
        f"the Consent is not valid FHIR at {m.get('element', 'an element')} ({d}); correct it"
    ),
    "WRAP_MISMATCH": lambda m, d, h: (
        "the key service would not release this document's key to your organisation; "
        "report it to the operators"
    ),
    "KEY_SHREDDED": lambda m, d, h: (
        "the document's key was destroyed (recalled, expired or access withdrawn); it can "
        "never be read again"
    ),
    "KEY_BACKEND_SEALED": lambda m, d, h: (
        "the key backend (Vault) is sealed; ask the operators to unseal it, then try again"
    ),
    "INTEGRITY_CHECK_FAILED": lambda m, d, h: (
        "the stored document failed its integrity check, so it was not delivered; report it "
        "to the operators"
    ),
    "KEY_VERSION_RETIRED": lambda m, d, h: (
        "the document's key was made under a retired key version; ask the operators to rewrap it"
    ),
    "DOCUMENT_TOO_LARGE": lambda m, d, h: (
        f"the document is larger than this deployment's limit "
        f"({_size(m.get('limit_bytes', '?'))}); split it, or ask the operators"
    ),
    "DOCUMENT_RECALLED": lambda m, d, h: (
        "the sender recalled this document; ask them for a new one"
    ),
    "DOCUMENT_EXPIRED": lambda m, d, h: (
        "the document passed its retention period and was destroyed; ask the sender again"
    ),
    "NO_RECIPIENT": lambda m, d, h: "nobody can receive this document now; check --to",
    "REQUEST_ID_REUSED": lambda m, d, h: (
        "this request id was already used for another document; use a new one"
    ),
    "NOT_A_RECIPIENT": _not_a_recipient,
    "RECIPIENT_NOT_ENTITLED": lambda m, d, h: (
        f"{_recipient(m.get('recipient_index', ''), h)} cannot receive it now "
        f"({_reason_words(m.get('cause', 'refused'))}); remove it from --to or ask an "
        "administrator"
    ),
}


def _transport(code: grpc.StatusCode, details: str, hints: Hints) -> str:
    """A failure no medrelay service explained: the network, TLS, a deadline."""
    variable = f"MEDRELAY_{hints.service.upper()}_ADDRESS"
    lowered = details.lower()
    if code is grpc.StatusCode.UNAVAILABLE:
        if any(word in lowered for word in ("handshake", "ssl", "certificate", "tls")):
            return (
                f"the TLS handshake with the {hints.service} service at {hints.address} failed; "
                "check that the certificate (--as and --pki, or --cert/--key/--ca) comes from "
                "this deployment's PKI"
            )
        return (
            f"cannot reach the {hints.service} service at {hints.address}; is it running? "
            f"(set --address or {variable})"
        )
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"no answer from the {hints.service} service at {hints.address} within "
            f"{hints.timeout:g} s; try again, or allow more time with --timeout"
        )
    if code is grpc.StatusCode.CANCELLED:
        return "cancelled before the service answered"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"{hints.address} does not offer this call; is it the {hints.service} service? "
            f"(set --address or {variable})"
        )
    return f"the {hints.service} service answered {code.name}: {details}"


def describe(exc: grpc.RpcError, hints: Hints) -> Failure:
    """The one-line Failure for a failed call (blocking or asyncio API)."""
    code: grpc.StatusCode = exc.code()
    details: str = exc.details() or ""
    info = error_info_from_metadata(exc.trailing_metadata())
    if info is None or not info.reason:
        return Failure(_transport(code, details, hints), code=code.name)
    short = info.reason.removeprefix(_PREFIX)
    explain = _EXPLAIN.get(short)
    meta = dict(info.metadata)
    if explain is None:
        message = f"refused ({_reason_words(info.reason)}): {details}"
    else:
        message = explain(meta, details, hints)
    return Failure(message, code=code.name, reason=info.reason)


@contextmanager
def calling(hints: Hints) -> Iterator[None]:
    """Turn a failed gRPC call inside the block into a Failure explained with `hints`."""
    try:
        yield
    except grpc.RpcError as exc:
        raise describe(exc, hints) from None
