"""A refusal becomes one line that names the rule and the way out (services/client/failures.py).

The line is built from the status code and the ErrorInfo reason and metadata, as a medrelay
server sends them (MedrelayError.to_status), never from the human message alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc
import pytest

from medrelay.common.v1.errors_pb2 import ErrorReason
from medrelay.errors import STATUS_DETAILS_KEY, MedrelayError
from medrelay.services.client.failures import Failure, Hints, describe


class Refused(grpc.RpcError):
    """A failed call as grpc raises it: code, details and trailing metadata."""

    def __init__(self, code: grpc.StatusCode, details: str, error: MedrelayError | None) -> None:
        self._code, self._details = code, details
        self._trailers = (
            ((STATUS_DETAILS_KEY, error.to_status("medrelay.exchange.v1").SerializeToString()),)
            if error is not None
            else ()
        )

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailers


HINTS = Hints(
    service="exchange",
    address="127.0.0.1:7104",
    timeout=30.0,
    caller="org/hopital-a/system/ehr",
    practitioner="dr-durand",
    recipients=("dr-b", "org:org-c"),
    action="send",
    options={"header.patient": "--patient", "header.recipients": "--to"},
)


def refused(reason: int, metadata: dict[str, str] | None = None, **hints: Any) -> Failure:
    """What a PERMISSION_DENIED with `reason` becomes, with HINTS changed by `hints`."""
    error = MedrelayError(
        grpc.StatusCode.PERMISSION_DENIED,
        ErrorReason.ValueType(reason),
        "server words",
        metadata or {},
    )
    return describe(Refused(error.code, error.message, error), dataclasses.replace(HINTS, **hints))


def test_an_identity_refusal_names_the_practitioner_the_organisation_and_the_way_out() -> None:
    failure = refused(ErrorReason.ERROR_REASON_NO_MEMBERSHIP)
    assert failure.message == (
        "practitioner 'dr-durand' is not a member of hopital-a; act through a system of their "
        "own organisation (--as org/<organisation>/system/<name>)"
    )
    assert (failure.exit_code, failure.code) == (1, "PERMISSION_DENIED")
    assert failure.reason == "ERROR_REASON_NO_MEMBERSHIP"


def test_a_consent_refusal_of_a_send_names_the_recipient_as_typed() -> None:
    failure = refused(ErrorReason.ERROR_REASON_CONSENT_DENIED, {"recipient_index": "1"})
    assert "does not allow sending to 'org:org-c' (--to number 2)" in failure.message
    fetch = refused(ErrorReason.ERROR_REASON_CONSENT_DENIED, action="fetch")
    assert "does not allow you to read this document now" in fetch.message


def test_a_recipient_not_entitled_says_why_in_words() -> None:
    failure = refused(
        ErrorReason.ERROR_REASON_RECIPIENT_NOT_ENTITLED,
        {"recipient_index": "0", "cause": "ERROR_REASON_MEMBERSHIP_EXPIRED"},
    )
    assert failure.message.startswith("'dr-b' (--to number 1) cannot receive it now")
    assert "(membership expired)" in failure.message


def test_an_invalid_field_names_the_option_that_set_it() -> None:
    failure = refused(
        ErrorReason.ERROR_REASON_INVALID_FIELD,
        {"field": "header.patient.value", "problem": "is required"},
    )
    assert failure.message == (
        "--patient: header.patient.value is required; correct --patient and try again"
    )


def test_an_internal_fault_gives_the_correlation_id_for_the_operators() -> None:
    failure = refused(ErrorReason.ERROR_REASON_INTERNAL, {"correlation_id": "c0ffee"})
    assert "correlation id c0ffee" in failure.message and "operators" in failure.message


@pytest.mark.parametrize("reason", [r for r in ErrorReason.values() if r])
def test_every_reason_reads_as_one_line_without_the_prefix(reason: int) -> None:
    failure = refused(reason)
    assert "\n" not in failure.message and "ERROR_REASON_" not in failure.message
    assert failure.message and not failure.message.startswith("refused (")


@pytest.mark.parametrize(
    ("code", "details", "expected"),
    [
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; last error: Connection refused",
            "cannot reach the exchange service at 127.0.0.1:7104; is it running? "
            "(set --address or MEDRELAY_EXCHANGE_ADDRESS)",
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "failed to connect to all addresses; Ssl handshake failed: CERTIFICATE_VERIFY_FAILED",
            "the TLS handshake with the exchange service at 127.0.0.1:7104 failed",
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "Deadline Exceeded",
            "no answer from the exchange service at 127.0.0.1:7104 within 30 s",
        ),
    ],
)
def test_transport_failures_say_where_and_what_to_check(
    code: grpc.StatusCode, details: str, expected: str
) -> None:
    failure = describe(Refused(code, details, None), HINTS)
    assert failure.message.startswith(expected)
    assert failure.reason == "" and failure.code == code.name
