"""Nothing is stored or logged readable: not the patient, not the title, not the note, not the
content, in clear or in any common encoding.

Documents whose patient identifier, title, note, forward note and content carry known markers
go the whole way (send, list by patient, fetch, forward, fetch, a send refused by consent);
then a `pg_dump` of the stack's database (every schema) and every log (each service's, and
PostgreSQL's) are searched for each marker in clear, in base64 at the three byte alignments
(standard and URL-safe alphabets) and in hex (lower and upper case). A control marker planted
in each of those forms in a table of the same database proves the search finds what is there.
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator

import grpc
import pytest

from medrelay.consent.v1 import consent_service_pb2 as cpb
from medrelay.embedded_pg import EmbeddedPostgres
from medrelay.exchange.v1 import exchange_service_pb2 as xpb
from tests import consent_fhir

from .exchange_stack import (
    MIB,
    NIR,
    SERVICES,
    TIMEOUT,
    ExchangeStack,
    exchange_stack,
    failure,
    fetch,
    header,
    patient,
    seed,
    send,
    system,
    to_practitioner,
)

#: A 13-digit NIR: the patient marker.
PATIENT_VALUE = "2790184736152"
#: A patient with no consent: a send for them is refused, and must leave no trace either.
REFUSED_PATIENT_VALUE = "2790184736169"
TITLE = "ZQXMARKERTITLE7Q3W"
NOTE = "ZQXMARKERNOTE5K8P"
CONTENT = "ZQXMARKERCONTENT2J6V"
FORWARD_NOTE = "ZQXMARKERFWDNOTE9T4M"
REFUSED_TITLE = "ZQXMARKERREFUSEDTITLE3H8N"
REFUSED_NOTE = "ZQXMARKERREFUSEDNOTE6D2C"
MARKERS = (
    PATIENT_VALUE,
    REFUSED_PATIENT_VALUE,
    TITLE,
    NOTE,
    CONTENT,
    FORWARD_NOTE,
    REFUSED_TITLE,
    REFUSED_NOTE,
)
#: Planted on purpose, in every form, where the search must find it.
CONTROL = "ZQXCONTROLMARKER4R1Y"


def forms(marker: str) -> dict[str, bytes]:
    """The byte strings that betray `marker`: clear, hex, and the part of its base64 encoding
    that does not depend on the surrounding bytes, for each of the three alignments."""
    raw = marker.encode()
    found = {"clear": raw, "hex": raw.hex().encode(), "HEX": raw.hex().upper().encode()}
    for prefix in range(3):
        encoded = base64.b64encode(b"\0" * prefix + raw)
        # Characters carrying only the marker's bits: after the prefix's, before the padding.
        middle = encoded[-(-8 * prefix // 6) : 8 * (prefix + len(raw)) // 6]
        found[f"base64+{prefix}"] = middle
        found[f"base64url+{prefix}"] = middle.translate(bytes.maketrans(b"+/", b"-_"))
    return found


def found_in(haystack: bytes, marker: str) -> set[str]:
    """The forms of `marker` present in `haystack`."""
    return {name for name, needle in forms(marker).items() if needle in haystack}


def test_forms_are_the_marker_at_every_alignment() -> None:
    raw = CONTROL.encode()
    for prefix in range(3):
        for suffix in range(3):
            encoded = base64.b64encode(os.urandom(prefix) + raw + os.urandom(suffix))
            assert forms(CONTROL)[f"base64+{prefix}"] in encoded
    assert found_in(b"..." + raw.hex().upper().encode() + b"...", CONTROL) == {"HEX"}
    assert found_in(os.urandom(4096), CONTROL) == set()


@pytest.fixture(scope="module")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, postgres: EmbeddedPostgres
) -> AsyncIterator[ExchangeStack]:
    # Every service logs at DEBUG: the most a misconfigured deployment could write.
    debug = {name: {"MEDRELAY_LOG_LEVEL": "DEBUG"} for name in SERVICES}
    home = tmp_path_factory.mktemp("exchange-confidentiality")
    async with exchange_stack(home, postgres, env=debug) as running:
        await seed(running)
        yield running


def marked_content(size: int) -> bytes:
    """Random bytes with the content marker at the start, across the first chunk boundary,
    in the middle and at the end."""
    data = bytearray(os.urandom(size))
    marker = CONTENT.encode()
    for offset in (0, MIB - len(marker) // 2, MIB + MIB // 2, size - len(marker)):
        data[offset : offset + len(marker)] = marker
    return bytes(data)


async def plant_control(stack: ExchangeStack) -> None:
    """The control marker in each form, in a table of the database that is dumped."""
    raw = CONTROL.encode()
    conn = await stack.connect("public")
    try:
        await conn.execute("CREATE TABLE leak_control (form text, as_text text, as_bytes bytea)")
        rows: list[tuple[str, str | None, bytes | None]] = [
            ("clear", CONTROL, None),
            ("hex", None, raw),  # pg_dump writes bytea as lowercase hex
            ("HEX", raw.hex().upper(), None),
        ]
        rows += [
            (f"base64+{n}", base64.b64encode(b"\x07" * n + raw).decode(), None) for n in range(3)
        ]
        rows += [
            (f"base64url+{n}", base64.urlsafe_b64encode(b"\xfb" * n + raw).decode(), None)
            for n in range(3)
        ]
        await conn.executemany("INSERT INTO leak_control VALUES ($1, $2, $3)", rows)
    finally:
        await conn.close()


async def test_no_marker_in_the_database_dump_or_any_log(stack: ExchangeStack) -> None:
    b, c = stack.exchange("org-b"), stack.exchange("org-c")
    await stack.consent(system("org-a")).RecordConsent(
        cpb.RecordConsentRequest(
            fhir_json=consent_fhir.consent_json(
                NIR,
                PATIENT_VALUE,
                consent_fhir.provision(
                    "permit",
                    actors=["Organization/org-b", "Organization/org-c"],
                    purposes=["TREAT"],
                ),
            )
        ),
        timeout=TIMEOUT,
    )
    content = marked_content(3 * MIB)
    sent = await send(
        stack.exchange_sync("org-a"),
        header(
            sender="dr-a",
            patient_value=PATIENT_VALUE,
            recipients=[to_practitioner("dr-b")],
            title=f"{TITLE} for {PATIENT_VALUE}",
            note=f"{NOTE} (patient {PATIENT_VALUE})",
            size_bytes=len(content),
        ),
        content,
    )
    listed = await b.ListInbox(
        xpb.ListInboxRequest(practitioner_id="dr-b", patient=patient(PATIENT_VALUE)),
        timeout=TIMEOUT,
    )
    assert [d.id for d in listed.documents] == [sent.id]
    got = await fetch(b, sent.id, "dr-b")
    assert got.content == content
    assert got.document.header.title == f"{TITLE} for {PATIENT_VALUE}"
    await b.ForwardDocument(
        xpb.ForwardDocumentRequest(
            document_id=sent.id,
            practitioner_id="dr-b",
            recipients=[to_practitioner("dr-c")],
            note=f"{FORWARD_NOTE} {PATIENT_VALUE}",
        ),
        timeout=TIMEOUT,
    )
    assert (await fetch(c, sent.id, "dr-c")).content == content

    # No consent for this patient (consent runs opt-in): refused, and nothing kept.
    with pytest.raises(grpc.RpcError) as caught:
        await send(
            stack.exchange_sync("org-a"),
            header(
                sender="dr-a",
                patient_value=REFUSED_PATIENT_VALUE,
                recipients=[to_practitioner("dr-b")],
                title=REFUSED_TITLE,
                note=REFUSED_NOTE,
            ),
            marked_content(2 * MIB),
        )
    assert failure(caught.value)[0] == grpc.StatusCode.PERMISSION_DENIED

    await plant_control(stack)
    dump = stack.pg_dump()
    # The search works: every planted form of the control marker is found...
    assert found_in(dump, CONTROL) == set(forms(CONTROL)), found_in(dump, CONTROL)
    # ...and the dump holds the stored documents: the ciphertext, as hex, is at least as
    # large as the content.
    assert b"COPY exchange.content_chunks" in dump
    assert len(dump) > 2 * len(content)

    sources = {"pg_dump": dump, "postgresql log": stack.server.log_file.read_bytes()}
    for name in stack.processes:
        sources[f"{name} log"] = stack.log_bytes(name)
        assert sources[f"{name} log"], f"{name} wrote no log at all"
    leaks = [
        (marker, source, sorted(found))
        for marker in MARKERS
        for source, text in sources.items()
        if (found := found_in(text, marker))
    ]
    assert leaks == []
