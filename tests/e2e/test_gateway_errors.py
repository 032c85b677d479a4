"""Every way a request to the FHIR gateway can be wrong, and the OperationOutcome it gets.

Each case asserts the HTTP status, that the body is an OperationOutcome fhir.resources' R4B
model accepts, its issue code, a diagnostics text naming the problem and, where the problem is
an element of the request, `expression` with its FHIRPath. Bad input first (malformed JSON,
the wrong resource or media type, missing required elements, a Bundle of 10,000 entries, a
body over MEDRELAY_GATEWAY_MAX_BODY_BYTES, set to 2 MiB for this module's gateway, announced
or chunked), then who calls (no certificate, an administrator's certificate, no, malformed or
unknown practitioner), then routing and state (404, 405, 412), and last a service down (503).
At the end, the gateway's log holds neither the patient identifier nor the document sent in
these requests, in any encoding, and no answer carried a stack trace.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import requests
from fhir.resources.R4B.operationoutcome import OperationOutcome

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.services.gateway.messages import MESSAGE_TYPE
from medrelay.services.gateway.mhd import INTENDED_RECIPIENT, LIST_TYPES
from medrelay.services.gateway.outcome import REASON_SYSTEM
from tests import consent_fhir

from .exchange_stack import (
    LOINC,
    NIR,
    admin,
    header,
    new_patient_value,
    send,
    to_practitioner,
)
from .gateway_stack import HTTP_TIMEOUT, PRACTITIONER_HEADER, GatewayStack, gateway_stack
from .test_exchange_confidentiality import found_in

MIB = 1024 * 1024
#: The module gateway's body limit (MEDRELAY_GATEWAY_MAX_BODY_BYTES).
LIMIT = 2 * MIB
#: The gateway's default MEDRELAY_GATEWAY_MAX_BUNDLE_ENTRIES.
MAX_ENTRIES = 1000
FHIR_JSON = "application/fhir+json"
SEND_AS_FHIR = {"Content-Type": FHIR_JSON}
#: The one patient every request of this module names, and the one document it sends: neither
#: may reach the gateway's log.
PATIENT = new_patient_value()
CONTENT = f"ZQXERRORSDOCUMENT {uuid.uuid4().hex} end of the document".encode()
UNKNOWN_PRACTITIONER = ErrorReason.Name(ErrorReason.ERROR_REASON_UNKNOWN_PRACTITIONER)
NO_MEMBERSHIP = ErrorReason.Name(ErrorReason.ERROR_REASON_NO_MEMBERSHIP)
NOT_FOUND = ErrorReason.Name(ErrorReason.ERROR_REASON_RESOURCE_NOT_FOUND)
INVALID_FIELD = ErrorReason.Name(ErrorReason.ERROR_REASON_INVALID_FIELD)
#: Every answer of this module, searched at the end for a stack trace.
ANSWERS: list[bytes] = []


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[GatewayStack]:
    async with gateway_stack(
        tmp_path_factory.mktemp("gateway-errors"),
        postgres,
        env={"gateway": {"MEDRELAY_GATEWAY_MAX_BODY_BYTES": str(LIMIT)}},
    ) as running:
        yield running


@pytest.fixture(scope="module")
def org_a(stack: GatewayStack) -> requests.Session:
    """org-a's EHR system acting for dr-a."""
    return stack.session("org-a")


def url(stack: GatewayStack, path: str) -> str:
    return f"{stack.base_url}{path}"


def outcome(
    answer: requests.Response,
    status: int,
    code: str,
    says: str,
    *,
    expression: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The answer is `status` with a valid OperationOutcome whose one issue has `code`,
    diagnostics matching `says` (a regular expression), and the expression and ErrorReason
    given (none when not given)."""
    ANSWERS.append(answer.content)
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"].split(";")[0] == FHIR_JSON, answer.headers
    body = answer.json()
    OperationOutcome.model_validate(body)
    [issue] = body["issue"]
    assert issue["severity"] == "error"
    assert issue["code"] == code, issue
    assert re.search(says, issue["diagnostics"]), issue["diagnostics"]
    assert issue.get("expression") == ([expression] if expression else None), issue
    if reason is None:
        assert "details" not in issue, issue
    else:
        assert issue["details"]["coding"] == [{"system": REASON_SYSTEM, "code": reason}], issue
    return issue


# -- what the requests carry -------------------------------------------------------------------


def subject() -> dict[str, Any]:
    return {"identifier": {"system": NIR, "value": PATIENT}}


def submission_set(**changes: Any) -> dict[str, Any]:
    """The ITI-65 SubmissionSet List, to dr-b, listing urn:uuid:doc."""
    resource = {
        "resourceType": "List",
        "status": "current",
        "mode": "working",
        "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
        "subject": subject(),
        "extension": [
            {"url": INTENDED_RECIPIENT, "valueReference": {"reference": "Practitioner/dr-b"}}
        ],
        "entry": [{"item": {"reference": "urn:uuid:doc"}}],
    }
    resource.update(changes)
    return {k: v for k, v in resource.items() if v is not None}


def document_reference(**changes: Any) -> dict[str, Any]:
    """The ITI-65 DocumentReference with CONTENT inline."""
    resource = {
        "resourceType": "DocumentReference",
        "status": "current",
        "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "subject": subject(),
        "type": {"coding": [{"system": LOINC, "code": "11488-4"}]},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(CONTENT).decode(),
                }
            }
        ],
    }
    resource.update(changes)
    return {k: v for k, v in resource.items() if v is not None}


def bundle(
    list_resource: dict[str, Any] | None = None,
    reference: dict[str, Any] | None = None,
    type_: str = "transaction",
) -> dict[str, Any]:
    """An ITI-65 Provide Document Bundle."""
    return {
        "resourceType": "Bundle",
        "type": type_,
        "entry": [
            {
                "fullUrl": "urn:uuid:list",
                "resource": list_resource or submission_set(),
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:doc",
                "resource": reference or document_reference(),
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }


def communication() -> dict[str, Any]:
    """A valid secure message about PATIENT to dr-b."""
    return {
        "resourceType": "Communication",
        "status": "completed",
        "subject": subject(),
        "recipient": [{"reference": "Practitioner/dr-b"}],
        "payload": [{"contentString": "see the scan"}],
    }


@pytest.fixture(scope="module")
def consent_id(stack: GatewayStack, org_a: requests.Session) -> str:
    """PATIENT permits org-b to treat; recorded by org-a through the gateway."""
    resource = json.loads(
        consent_fhir.consent_json(
            NIR,
            PATIENT,
            consent_fhir.provision("permit", actors=["Organization/org-b"], purposes=["TREAT"]),
        )
    )
    answer = org_a.post(
        url(stack, "/Consent"), json=resource, headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def test_a_document_goes_through(
    stack: GatewayStack, org_a: requests.Session, consent_id: str
) -> None:
    """The control: the same kind of request, right, is sent and read back, so the refusals
    below are about what they change (and the log check at the end has content to miss)."""
    answer = org_a.post(url(stack, "/"), json=bundle(), headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT)
    assert answer.status_code == 200, answer.text
    location = answer.json()["entry"][1]["response"]["location"]
    document_id = location.split("/")[1]
    read = stack.session("org-b").get(
        url(stack, f"/Binary/{document_id}"), headers={"Accept": "*/*"}, timeout=HTTP_TIMEOUT
    )
    assert read.status_code == 200
    assert read.content == CONTENT


# -- bad input -----------------------------------------------------------------------------------


def test_malformed_json(stack: GatewayStack, org_a: requests.Session) -> None:
    answer = org_a.post(
        url(stack, "/Communication"),
        data=b'{"resourceType": "Communication",',
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(answer, 400, "invalid", r"^the body is not valid JSON: .* at line 1 column 34$")


@pytest.mark.parametrize("body", [b"[1, 2]", b'"Communication"', b"null", b"42"])
def test_json_that_is_not_an_object(
    stack: GatewayStack, org_a: requests.Session, body: bytes
) -> None:
    answer = org_a.post(
        url(stack, "/Communication"), data=body, headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT
    )
    outcome(answer, 400, "invalid", r"is not a JSON object \(a FHIR resource is one\)")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/Communication", "Communication"), ("/Consent", "Consent"), ("/", "Bundle")],
)
def test_the_wrong_resource_type(
    stack: GatewayStack, org_a: requests.Session, path: str, expected: str
) -> None:
    answer = org_a.post(
        url(stack, path),
        json={"resourceType": "Patient", "identifier": [{"system": NIR, "value": PATIENT}]},
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(
        answer,
        400,
        "invalid",
        f"^expected a {expected} resource, got resourceType Patient$",
        expression=f"{expected}.resourceType",
    )


@pytest.mark.parametrize("media_type", ["text/plain", "application/xml", "application/fhir+xml"])
def test_the_wrong_media_type(
    stack: GatewayStack, org_a: requests.Session, media_type: str
) -> None:
    answer = org_a.post(
        url(stack, "/Communication"),
        data=json.dumps(communication()).encode(),
        headers={"Content-Type": media_type},
        timeout=HTTP_TIMEOUT,
    )
    outcome(
        answer,
        415,
        "not-supported",
        f"^send the Communication as application/fhir\\+json, not {re.escape(media_type)}$",
    )


def test_a_duplicate_json_key(stack: GatewayStack, org_a: requests.Session) -> None:
    """Which of two values would count is parser-dependent: neither is taken."""
    answer = org_a.post(
        url(stack, "/Communication"),
        data=b'{"resourceType": "Communication", "status": "completed", "status": "x"}',
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(answer, 400, "invalid", r"^the body has an object with the property 'status' twice$")


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": ' * 10_000 + b"1" + b"}" * 10_000,
        b'{"resourceType": "Communication", "extension": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    ],
    ids=["objects", "arrays"],
)
def test_json_nested_10000_deep(stack: GatewayStack, org_a: requests.Session, body: bytes) -> None:
    answer = org_a.post(
        url(stack, "/Communication"), data=body, headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT
    )
    outcome(answer, 400, "invalid", r"^the body is nested deeper than 64 levels$")


def test_an_integer_of_5000_digits(stack: GatewayStack, org_a: requests.Session) -> None:
    """Past Python's integer conversion limit json.loads raises a plain ValueError."""
    answer = org_a.post(
        url(stack, "/Communication"),
        data=b'{"resourceType": "Communication", "status": "completed", "x": 1'
        + b"0" * 5000
        + b"}",
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(answer, 400, "invalid", r"a number with more digits than can be read")


def test_a_document_reference_without_content(stack: GatewayStack, org_a: requests.Session) -> None:
    answer = org_a.post(
        url(stack, "/"),
        json=bundle(reference=document_reference(content=None)),
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(
        answer,
        400,
        "invalid",
        r"^Bundle\.entry\[1\]\.resource\.content: is required$",
        expression="Bundle.entry[1].resource.content",
    )


def test_a_communication_without_status(stack: GatewayStack, org_a: requests.Session) -> None:
    message = communication()
    del message["status"]
    answer = org_a.post(
        url(stack, "/Communication"), json=message, headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT
    )
    outcome(answer, 400, "invalid", r"^Communication\.status: ", expression="Communication.status")


def test_a_list_without_the_submissionset_code(
    stack: GatewayStack, org_a: requests.Session
) -> None:
    """Valid FHIR, but not an MHD SubmissionSet: a business rule, 422."""
    answer = org_a.post(
        url(stack, "/"),
        json=bundle(list_resource=submission_set(code=None)),
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(
        answer,
        422,
        "business-rule",
        r"^Bundle\.entry\[0\]\.resource\.code: a SubmissionSet List is coded "
        + re.escape(LIST_TYPES)
        + r"\|submissionset$",
        expression="Bundle.entry[0].resource.code",
    )


def test_a_batch_bundle(stack: GatewayStack, org_a: requests.Session) -> None:
    answer = org_a.post(
        url(stack, "/"), json=bundle(type_="batch"), headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT
    )
    outcome(
        answer,
        400,
        "invalid",
        r"^a Provide Document Bundle is a transaction Bundle$",
        expression="Bundle.type",
    )


def test_a_bundle_of_10000_entries(stack: GatewayStack, org_a: requests.Session) -> None:
    """Well under the body limit, far over the entry limit: refused before it is validated."""
    entry = {
        "resource": {"resourceType": "Binary", "contentType": "text/plain"},
        "request": {"method": "POST", "url": "Binary"},
    }
    body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 10_000})
    assert len(body) < LIMIT
    answer = org_a.post(
        url(stack, "/"), data=body.encode(), headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT
    )
    outcome(
        answer,
        413,
        "too-long",
        f"^the Bundle has 10000 entries; at most {MAX_ENTRIES} are accepted in one request$",
        expression="Bundle.entry",
    )


def over_the_limit() -> bytes:
    """A valid-looking Bundle one byte over the limit (its end never matters)."""
    head = b'{"resourceType": "Bundle", "type": "transaction", "entry": [], "x": "'
    return head + b"a" * (LIMIT + 1 - len(head) - 2) + b'"}'


def test_a_body_over_the_limit_announced_by_content_length(
    stack: GatewayStack, org_a: requests.Session
) -> None:
    body = over_the_limit()
    assert len(body) == LIMIT + 1
    answer = org_a.post(url(stack, "/"), data=body, headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT)
    outcome(
        answer, 413, "too-long", f"^the body is {LIMIT + 1} bytes; at most {LIMIT} are accepted$"
    )


def test_a_body_over_the_limit_sent_chunked(stack: GatewayStack, org_a: requests.Session) -> None:
    """No Content-Length to refuse on: the gateway counts while it reads, and stops."""
    body = over_the_limit()

    def chunks() -> Iterator[bytes]:  # a generator: requests sends it chunked
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    answer = org_a.post(url(stack, "/"), data=chunks(), headers=SEND_AS_FHIR, timeout=HTTP_TIMEOUT)
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in answer.request.headers
    outcome(answer, 413, "too-long", f"^the body is over {LIMIT} bytes, the most accepted$")


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/related", b"--x\r\n\r\n{}\r\n--x--\r\n"),
        ("multipart/related; boundary=x", b"not framed by the boundary"),
    ],
    ids=["no-boundary", "not-framed"],
)
def test_a_malformed_multipart_submission(
    stack: GatewayStack, org_a: requests.Session, content_type: str, body: bytes
) -> None:
    answer = org_a.post(
        url(stack, "/"), data=body, headers={"Content-Type": content_type}, timeout=HTTP_TIMEOUT
    )
    outcome(answer, 400, "invalid", r"^the multipart/related body is malformed")


# -- who calls -----------------------------------------------------------------------------------


def bare_session(stack: GatewayStack) -> requests.Session:
    """HTTPS trusting the deployment's CA, without a client certificate."""
    session = requests.Session()
    session.verify = str(stack.certificates("org-a").ca)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA
    session.headers[PRACTITIONER_HEADER] = "dr-a"
    return session


def test_no_client_certificate(stack: GatewayStack) -> None:
    answer = bare_session(stack).get(url(stack, "/Organization"), timeout=HTTP_TIMEOUT)
    outcome(answer, 401, "login", r"client certificate \(mutual TLS\)")


def test_the_certificate_of_an_administrator(stack: GatewayStack) -> None:
    """Verified by TLS, but not an organisation's system: refused whatever it asks."""
    session = bare_session(stack)
    paths = stack.services.pki.paths(admin())
    session.cert = (str(paths.cert), str(paths.key))
    answer = session.get(url(stack, "/Organization"), timeout=HTTP_TIMEOUT)
    outcome(answer, 403, "forbidden", r"^only an organisation's system of this deployment")


def test_no_practitioner(stack: GatewayStack) -> None:
    session = stack.session("org-a")
    del session.headers[PRACTITIONER_HEADER]
    answer = session.get(url(stack, "/Organization"), timeout=HTTP_TIMEOUT)
    outcome(answer, 401, "login", f"name the practitioner .* in one {PRACTITIONER_HEADER} header")


@pytest.mark.parametrize("value", ["", "dr a", "dr-a; dr-b", "Practitioner/", "x" * 65])
def test_a_malformed_practitioner(stack: GatewayStack, value: str) -> None:
    session = stack.session("org-a")
    session.headers[PRACTITIONER_HEADER] = value
    answer = session.get(url(stack, "/Organization"), timeout=HTTP_TIMEOUT)
    outcome(answer, 401, "login", f"^{PRACTITIONER_HEADER} must be a practitioner id")


@pytest.mark.parametrize(
    ("practitioner", "path", "reason"),
    [
        ("dr-nobody", "/Organization", UNKNOWN_PRACTITIONER),
        (
            "dr-nobody",
            f"/DocumentReference?patient.identifier={NIR}|{PATIENT}",
            UNKNOWN_PRACTITIONER,
        ),
        ("dr-b", "/Practitioner", NO_MEMBERSHIP),
    ],
    ids=["unknown-via-identity", "unknown-via-exchange", "member-elsewhere"],
)
def test_a_practitioner_identity_refuses(
    stack: GatewayStack, practitioner: str, path: str, reason: str
) -> None:
    """403 with identity's reason, whether the gateway asks identity or exchange does."""
    answer = stack.session("org-a", practitioner).get(url(stack, path), timeout=HTTP_TIMEOUT)
    outcome(answer, 403, "forbidden", r"practitioner|identity refused", reason=reason)


# -- routing and state ---------------------------------------------------------------------------


def test_an_unknown_route(stack: GatewayStack, org_a: requests.Session) -> None:
    answer = org_a.get(url(stack, f"/Patient?identifier={NIR}|{PATIENT}"), timeout=HTTP_TIMEOUT)
    outcome(answer, 404, "not-found", r"^no such FHIR endpoint here; GET /metadata lists")


def test_a_method_the_route_does_not_serve(
    stack: GatewayStack, org_a: requests.Session, consent_id: str
) -> None:
    answer = org_a.delete(url(stack, f"/Consent/{consent_id}"), timeout=HTTP_TIMEOUT)
    outcome(answer, 405, "not-supported", r"^this method is not supported here; allowed: GET,PUT$")
    assert answer.headers["Allow"] == "GET,PUT"


def test_an_unknown_binary(stack: GatewayStack, org_a: requests.Session) -> None:
    document_id = str(uuid.uuid4())
    answer = org_a.get(url(stack, f"/Binary/{document_id}"), timeout=HTTP_TIMEOUT)
    issue = outcome(answer, 404, "not-found", r"^Document not found$", reason=NOT_FOUND)
    assert document_id not in json.dumps(issue)


def test_a_binary_id_that_is_not_an_id(stack: GatewayStack, org_a: requests.Session) -> None:
    answer = org_a.get(url(stack, "/Binary/not-a-uuid"), timeout=HTTP_TIMEOUT)
    outcome(
        answer,
        400,
        "invalid",
        r"^document_id: must be a UUID$",
        expression="Binary.id",
        reason=INVALID_FIELD,
    )


def test_a_consent_update_with_a_stale_if_match(
    stack: GatewayStack, org_a: requests.Session, consent_id: str
) -> None:
    current = org_a.get(url(stack, f"/Consent/{consent_id}"), timeout=HTTP_TIMEOUT)
    assert current.status_code == 200, current.text
    assert current.headers["ETag"] == 'W/"1"'
    changed = {**current.json(), "dateTime": "2026-02-01T00:00:00Z"}
    answer = org_a.put(
        url(stack, f"/Consent/{consent_id}"),
        json=changed,
        headers={**SEND_AS_FHIR, "If-Match": 'W/"7"'},
        timeout=HTTP_TIMEOUT,
    )
    outcome(answer, 412, "conflict", r"^the consent is at version 1, not 7 as If-Match says")
    again = org_a.get(url(stack, f"/Consent/{consent_id}"), timeout=HTTP_TIMEOUT)
    assert again.headers["ETag"] == 'W/"1"'  # nothing was written


# -- a service down (last: exchange stays down) --------------------------------------------------


def test_a_search_parameter_not_implemented_is_refused(
    stack: GatewayStack, org_a: requests.Session
) -> None:
    """Ignoring it would answer more than the client asked for."""
    answer = org_a.get(
        url(stack, "/DocumentReference"),
        params={"patient.identifier": f"{NIR}|{PATIENT}", "author": "Practitioner/dr-a"},
        timeout=HTTP_TIMEOUT,
    )
    outcome(answer, 400, "invalid", "'author' is not supported", expression="author")


def test_a_message_typed_document_that_is_no_communication_is_a_422(
    stack: GatewayStack, consent_id: str
) -> None:
    """An EHR can send a document of the message type over gRPC with any content; reading it
    as a Communication is a 422 that points at the raw retrieval, not a 500."""
    head = header(
        sender="dr-a",
        patient_value=PATIENT,
        recipients=[to_practitioner("dr-b")],
        content_type="text/plain",
    )
    head.type.CopyFrom(MESSAGE_TYPE)
    document = asyncio.run(send(stack.services.exchange_sync("org-a"), head, b"not JSON at all"))
    answer = stack.session("org-b").get(
        url(stack, f"/Communication/{document.id}"), timeout=HTTP_TIMEOUT
    )
    outcome(
        answer,
        422,
        "business-rule",
        f"not a message .* Binary/{document.id}",
        expression="Communication",
    )


def test_a_header_too_long_to_parse_is_refused_without_logging_it(
    stack: GatewayStack, org_a: requests.Session
) -> None:
    """aiohttp answers a header line over 8190 bytes itself (a plain-text 400, before any
    FHIR code runs); what matters here is that its log record does not quote the header."""
    planted = "PLANTEDJUSTIFICATION" * 500
    answer = org_a.get(
        url(stack, "/Binary/00000000-0000-0000-0000-000000000000"),
        headers={"X-Medrelay-Break-Glass": planted},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 400
    log = stack.log().decode(errors="replace")
    assert "PLANTEDJUSTIFICATION" not in log
    assert "refused a request that is not valid HTTP" in log


def test_exchange_down(stack: GatewayStack, org_a: requests.Session) -> None:
    stack.services.stop("exchange")
    search = org_a.get(
        url(stack, "/DocumentReference"),
        params={"patient.identifier": f"{NIR}|{PATIENT}"},
        timeout=HTTP_TIMEOUT,
    )
    outcome(search, 503, "transient", r"^a medrelay service is unavailable; retry later$")
    send = org_a.post(
        url(stack, "/Communication"),
        json=communication(),
        headers=SEND_AS_FHIR,
        timeout=HTTP_TIMEOUT,
    )
    outcome(send, 503, "transient", r"^a medrelay service is unavailable; retry later$")
    # What does not need exchange still works, and readiness says what is down.
    assert org_a.get(url(stack, "/Organization"), timeout=HTTP_TIMEOUT).status_code == 200
    ready = org_a.get(url(stack, "/readyz"), timeout=HTTP_TIMEOUT)
    assert ready.status_code == 503
    assert ready.json()["services"]["exchange"] == "not serving"


# -- what nobody may see -------------------------------------------------------------------------


def test_no_patient_identifier_document_or_stack_trace_leaks(stack: GatewayStack) -> None:
    log = stack.log()
    assert b'"message": "request"' in log  # the log is the one these requests wrote
    assert found_in(log, PATIENT) == set()
    assert found_in(log, CONTENT.decode()) == set()
    assert b"unexpected failure" not in log
    for answer in ANSWERS:
        assert b"Traceback" not in answer
        assert PATIENT.encode() not in answer
