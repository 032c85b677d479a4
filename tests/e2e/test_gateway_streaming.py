"""Large documents through the FHIR gateway without being held whole, in both directions.

A push as multipart/related (the Bundle, then the document as a part named by Content-ID, as
DICOMweb STOW-RS does) streams each part to exchange as it arrives; a retrieval streams the
content as exchange decrypts it. The module's gateway accepts JSON bodies of at most 1 MiB,
so the 64 MiB document below can only pass streamed, and the gateway process's memory is
sampled while it moves: holding it whole would grow the process by at least 64 MiB, while
streaming holds a few 1 MiB chunks (the rest of the growth measured is the allocator keeping
freed chunks).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psutil
import pytest

from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.services.gateway.mhd import INTENDED_RECIPIENT, LIST_TYPES
from tests import consent_fhir

from .exchange_stack import LOINC, NIR, new_patient_value
from .gateway_stack import HTTP_TIMEOUT, GatewayStack, gateway_stack

MIB = 1024 * 1024
DOCUMENT_BYTES = 64 * MIB
BOUNDARY = "medrelay-test-boundary"


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[GatewayStack]:
    async with gateway_stack(
        tmp_path_factory.mktemp("gateway-streaming"),
        postgres,
        env={"gateway": {"MEDRELAY_GATEWAY_MAX_BODY_BYTES": str(MIB)}},
    ) as running:
        yield running


def submission(patient: str, content_id: str, **attachment: Any) -> dict[str, Any]:
    """An ITI-65 Bundle whose one document is the multipart part `content_id`."""
    subject = {"identifier": {"system": NIR, "value": patient}}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:list",
                "resource": {
                    "resourceType": "List",
                    "status": "current",
                    "mode": "working",
                    "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
                    "subject": subject,
                    "extension": [
                        {
                            "url": INTENDED_RECIPIENT,
                            "valueReference": {"reference": "Practitioner/dr-b"},
                        }
                    ],
                    "entry": [{"item": {"reference": "urn:uuid:doc"}}],
                },
                "request": {"method": "POST", "url": "List"},
            },
            {
                "fullUrl": "urn:uuid:doc",
                "resource": {
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "masterIdentifier": {
                        "system": "urn:ietf:rfc:3986",
                        "value": f"urn:uuid:{uuid.uuid4()}",
                    },
                    "subject": subject,
                    "type": {"coding": [{"system": LOINC, "code": "18748-4"}]},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "application/dicom",
                                "url": f"cid:{content_id}",
                                **attachment,
                            }
                        }
                    ],
                },
                "request": {"method": "POST", "url": "DocumentReference"},
            },
        ],
    }


def document_bytes(size: int) -> Iterator[bytes]:
    """Deterministic pseudo-random content, generated as it is sent."""
    seed = hashlib.sha256(b"scan").digest()
    for index in range(size // MIB):
        block = hashlib.sha256(seed + index.to_bytes(8, "big")).digest()
        yield block * (MIB // len(block))


def multipart(bundle: dict[str, Any], content_id: str, content: Iterator[bytes]) -> Iterator[bytes]:
    """multipart/related: the Bundle, then the document part; generated, never held whole."""
    yield (
        f"--{BOUNDARY}\r\nContent-Type: application/fhir+json\r\n\r\n".encode()
        + json.dumps(bundle).encode()
        + f"\r\n--{BOUNDARY}\r\nContent-Type: application/dicom\r\nContent-ID: <{content_id}>\r\n\r\n".encode()
    )
    yield from content
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


HEADERS = {
    "Content-Type": f'multipart/related; type="application/fhir+json"; boundary={BOUNDARY}',
}


async def allow(stack: GatewayStack, patient: str) -> None:
    consent = json.loads(
        consent_fhir.consent_json(
            NIR,
            patient,
            consent_fhir.provision("permit", actors=["Organization/org-b"], purposes=["TREAT"]),
        )
    )
    answer = await asyncio.to_thread(
        stack.session("org-a").post,
        f"{stack.base_url}/Consent",
        json=consent,
        headers={"Content-Type": "application/fhir+json"},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 201, answer.text


class PeakMemory:
    """The gateway process's largest resident set while a transfer runs (sampled)."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.baseline = self.process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


async def test_a_large_scan_streams_through_the_gateway_both_ways(stack: GatewayStack) -> None:
    patient = new_patient_value()
    await allow(stack, patient)
    expected = hashlib.sha256()
    for block in document_bytes(DOCUMENT_BYTES):
        expected.update(block)
    gateway_pid = stack.services.processes["gateway"].pid

    with PeakMemory(gateway_pid) as pushing:
        answer = await asyncio.to_thread(
            stack.session("org-a").post,
            f"{stack.base_url}/",
            data=multipart(
                submission(patient, "scan-1", size=DOCUMENT_BYTES),
                "scan-1",
                document_bytes(DOCUMENT_BYTES),
            ),
            headers=HEADERS,
            timeout=HTTP_TIMEOUT,
        )
    assert answer.status_code == 200, answer.text
    location = answer.json()["entry"][1]["response"]["location"]
    document_id = location.split("/")[1]

    def retrieve() -> tuple[int, str, int]:
        received = hashlib.sha256()
        size = 0
        with stack.session("org-b").get(
            f"{stack.base_url}/Binary/{document_id}",
            headers={"Accept": "*/*"},
            stream=True,
            timeout=HTTP_TIMEOUT,
        ) as response:
            for block in response.iter_content(MIB):
                received.update(block)
                size += len(block)
            return response.status_code, received.hexdigest(), size

    with PeakMemory(gateway_pid) as retrieving:
        status, digest, size = await asyncio.to_thread(retrieve)
    assert (status, size) == (200, DOCUMENT_BYTES)
    assert digest == expected.hexdigest()
    # 64 MiB went each way; holding it whole would cost at least that.
    assert pushing.growth < 40 * MIB, f"push grew the gateway by {pushing.growth / MIB:.1f} MiB"
    assert retrieving.growth < 40 * MIB, f"retrieve grew it by {retrieving.growth / MIB:.1f} MiB"
    print(
        f"gateway growth: push {pushing.growth / MIB:.1f} MiB, retrieve {retrieving.growth / MIB:.1f} MiB"
    )


async def test_a_part_whose_hash_does_not_match_is_refused_and_not_delivered(
    stack: GatewayStack,
) -> None:
    patient = new_patient_value()
    await allow(stack, patient)
    content = [b"x" * MIB, b"y" * 1000]
    wrong = base64.b64encode(hashlib.sha1(b"something else").digest()).decode()
    answer = await asyncio.to_thread(
        stack.session("org-a").post,
        f"{stack.base_url}/",
        data=b"".join(multipart(submission(patient, "p1", hash=wrong), "p1", iter(content))),
        headers=HEADERS,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 422, answer.text
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.content[0].attachment.hash"]
    assert await inbox(stack, patient) == []


async def test_a_missing_or_unnamed_part_is_a_422_and_nothing_is_delivered(
    stack: GatewayStack,
) -> None:
    patient = new_patient_value()
    await allow(stack, patient)
    for content_id, part_id in (("p1", "other"),):
        body = b"".join(multipart(submission(patient, content_id), part_id, iter([b"data"])))
        answer = await asyncio.to_thread(
            stack.session("org-a").post,
            f"{stack.base_url}/",
            data=body,
            headers=HEADERS,
            timeout=HTTP_TIMEOUT,
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["resourceType"] == "OperationOutcome"
    bundle_only = (
        f"--{BOUNDARY}\r\nContent-Type: application/fhir+json\r\n\r\n".encode()
        + json.dumps(submission(patient, "p2")).encode()
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    answer = await asyncio.to_thread(
        stack.session("org-a").post,
        f"{stack.base_url}/",
        data=bundle_only,
        headers=HEADERS,
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 422 and "Content-ID" in answer.json()["issue"][0]["diagnostics"]
    assert await inbox(stack, patient) == []


async def inbox(stack: GatewayStack, patient: str) -> list[Any]:
    answer = await asyncio.to_thread(
        stack.session("org-b").get,
        f"{stack.base_url}/DocumentReference",
        params={"patient.identifier": f"{NIR}|{patient}"},
        timeout=HTTP_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    return list(answer.json().get("entry", []))
