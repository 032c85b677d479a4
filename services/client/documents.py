"""Document commands, as an EHR integrator or a practitioner's system uses them:
`send`, `inbox`, `fetch`, `ack`, `forward`, `recall` and `status`.

Each calls the exchange service as an organisation's system (`--as org/<org>/system/<name>`)
for a practitioner (`--practitioner`), the pair identity authorises on every call.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from medrelay.exchange.v1 import exchange_service_pb2 as xpb

from . import inputs
from .failures import usage
from .options import PatientOption, PractitionerOption, Via, client_command
from .render import Output, message_dict, shown_path, size, when
from .transfer import OnProgress, Outgoing, fetch_to_file, send_file

#: Which option sets which field of a send, so a refusal names the option to correct.
SEND_FIELDS = {
    "header.patient": "--patient",
    "header.recipients": "--to",
    "header.type": "--type",
    "header.title": "--title",
    "header.note": "--note",
    "header.content_type": "--content-type",
    "header.purpose": "--purpose",
    "header.data_classes": "--class",
    "header.practitioner_id": "--practitioner",
    "header.case_label": "--case",
    "content": "PATHS",
}
_DOCUMENT_FIELDS = {
    "document_id": "DOCUMENT_ID",
    "practitioner_id": "--practitioner",
    "purpose": "--purpose",
    "justification": "--justification",
    "recipients": "--to",
    "note": "--note",
    "reason": "--reason",
    "patient": "--patient",
    "type": "--type",
}
_STATES = {
    xpb.DELIVERY_STATE_DELIVERED: "new",
    xpb.DELIVERY_STATE_FETCHED: "opened",
    xpb.DELIVERY_STATE_READ: "read",
    xpb.DELIVERY_STATE_REVOKED: "revoked",
}

ToOption = Annotated[
    list[str],
    typer.Option(
        "--to",
        help="a recipient (repeat for more): dr-b, dr-b@<organisation> (through it), "
        "org:<organisation> (every member), team:<care team>",
        show_default=False,
    ),
]
ProgressOption = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="show a progress bar (default: when stderr is a terminal)",
        show_default=False,
    ),
]
DocumentId = Annotated[str, typer.Argument(help="the document's id", show_default=False)]


def register(app: typer.Typer) -> None:
    """Add the document commands to `app`."""
    client_command(app, "send")(send)
    client_command(app, "inbox")(inbox)
    client_command(app, "fetch")(fetch)
    client_command(app, "ack")(ack)
    client_command(app, "forward")(forward)
    client_command(app, "recall")(recall)
    client_command(app, "status")(status)


def _files(paths: list[Path]) -> list[Path]:
    """The files to send: each file given, and each visible file directly in each folder."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(
                entry
                for entry in path.iterdir()
                if entry.is_file() and not entry.name.startswith(".")
            )
            if not inside:
                raise usage(f"{path}: the folder has no file to send")
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise usage(f"{path}: not a regular file or a folder")
        else:
            raise usage(f"{path}: no such file or folder; check the path")
    for file in files:
        if not os.access(file, os.R_OK):
            raise usage(f"{file}: not readable (permission denied)")
    return files


class _Rate(ProgressColumn):
    """The transfer rate in the same binary units as the sizes (rich's own column is decimal)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{size(speed)}/s" if speed else "?", style="progress.data.speed")


def _progress(output: Output) -> Progress:
    """A transfer's progress bar on stderr: name, bar, bytes, rate, time left."""
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        _Rate(),
        TimeRemainingColumn(),
        console=output.err,
        redirect_stdout=False,
        redirect_stderr=False,
    )


@contextmanager
def _progress_or_none(output: Output, show: bool | None) -> Iterator[Progress | None]:
    """A progress bar when asked, or by default when a person watches stderr."""
    wanted = output.interactive if show is None else show
    if not wanted:
        yield None
        return
    with _progress(output) as bar:
        try:
            yield bar
        except BaseException:
            # A transfer that failed leaves no bar behind: the person sees the one line that
            # says why, not a half-full bar that suggests something arrived.
            bar.live.transient = True
            raise


def _advancer(bar: Progress | None, description: str, total: int | None) -> OnProgress | None:
    """A callback that moves a new task of `bar` along (None without a bar)."""
    if bar is None:
        return None
    task = bar.add_task(description, total=total)

    def advance(count: int) -> None:
        bar.advance(task, count)

    return advance


def _recipients(document: xpb.Document) -> str:
    """'dr-b at org-b, everyone at org-c' from the deliveries."""
    shown = [
        f"{d.practitioner_id or 'every member'} at {d.organization_id}" for d in document.deliveries
    ]
    return ", ".join(shown) if shown else "nobody"


def _rate(count: int, seconds: float) -> str:
    return f"{size(count / seconds)}/s" if seconds > 0 else "instant"


def send(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="files or folders to send; each file (of a folder too) is its own document",
            show_default=False,
        ),
    ],
    practitioner: PractitionerOption,
    patient: PatientOption,
    to: ToOption,
    type_: Annotated[
        str,
        typer.Option(
            "--type",
            help=f"the document type: {', '.join(inputs.DOCUMENT_TYPES)}, a LOINC code "
            "(18748-4) or SYSTEM|CODE",
            show_default=False,
        ),
    ],
    note: Annotated[str, typer.Option(help="a note to the recipients (encrypted)")] = "",
    title: Annotated[
        str | None,
        typer.Option(help="a title (default: the file's name; encrypted)", show_default=False),
    ] = None,
    content_type: Annotated[
        str | None,
        typer.Option(help="the MIME type (default: from the file's name)", show_default=False),
    ] = None,
    purpose: Annotated[str, typer.Option(help="HL7 v3 PurposeOfUse")] = "TREAT",
    data_class: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="a sensitivity class of the content (PSY, HIV, SEX, ...), repeatable",
            show_default=False,
        ),
    ] = None,
    deidentify: Annotated[
        bool,
        typer.Option(
            "--deidentify",
            help="send a de-identified copy (DICOM, JPEG, PNG or FHIR JSON): identifiers, "
            "faces, burned-in text and metadata removed, dates shifted; it may go outside the "
            "patient's care team if the deployment's consent policy allows",
        ),
    ] = False,
    case: Annotated[
        str,
        typer.Option(
            "--case",
            help="with --deidentify: a label for the case; documents of one patient and case "
            "share dates and DICOM UIDs (default: one case per patient)",
        ),
    ] = "",
    progress: ProgressOption = None,
    *,
    output: Output,
    via: Via,
) -> None:
    """Send files to colleagues, encrypted, for one patient, if the patient's consent allows.

    Example: medrelay send scan.dcm --as org/hopital-a/system/ehr -p dr-a
    --patient 'urn:oid:1.2.250.1.213.1.4.8|<NIR>' --to dr-b --type imaging --note "your view?"
    """
    files = _files(paths)
    template = Outgoing(
        practitioner=practitioner,
        patient=inputs.patient(patient),
        recipients=[inputs.recipient(text) for text in to],
        type=inputs.document_type(type_),
        note=note,
        purpose=inputs.code(purpose, "--purpose"),
        data_classes=[inputs.code(c, "--class") for c in data_class or []],
        deidentify=deidentify,
        case_label=case,
    )
    if case and not deidentify:
        raise usage("--case is for a de-identified send: add --deidentify")
    if title is not None and len(files) > 1:
        raise usage("--title names one document; leave it out to title each by its file name")
    with via.session(
        "exchange", practitioner=practitioner, recipients=to, action="send", options=SEND_FIELDS
    ) as conn:
        stub = conn.exchange()
        for file in files:
            outgoing = dataclasses.replace(
                template,
                title=title or "",
                content_type=inputs.content_type(file, content_type),
            )
            with _progress_or_none(output, progress) as bar:
                advance = _advancer(bar, file.name, file.stat().st_size)
                sent = send_file(stub, file, outgoing, timeout=via.timeout, on_progress=advance)
            document = sent.document
            if output.json:
                output.emit(
                    {
                        "document_id": document.id,
                        "file": str(file),
                        "size_bytes": sent.size,
                        "sha256": sent.sha256,
                        "request_id": sent.request_id,
                        "seconds": round(sent.seconds, 3),
                        "document": message_dict(document),
                    }
                )
            elif document.header.deidentify:
                output.say(
                    f"sent a de-identified copy of {file.name} ({size(sent.size)} in "
                    f"{sent.seconds:.1f} s; {size(document.size_bytes)} once de-identified) as "
                    f"document {document.id}"
                )
                output.say(f"  to {_recipients(document)}")
                output.say("  the original was not sent; fetch the copy to see what they see")
            else:
                output.say(
                    f"sent {file.name} ({size(sent.size)} in {sent.seconds:.1f} s, "
                    f"{_rate(sent.size, sent.seconds)}) as document {document.id}"
                )
                output.say(f"  to {_recipients(document)}")
                output.say(f"  sha-256 {sent.sha256}")


def inbox(
    practitioner: PractitionerOption,
    type_: Annotated[
        str | None,
        typer.Option("--type", help="only this document type", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="sent at or after: 2026-11-01, 2026-11-01T14:30, 7d, 12h", show_default=False
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="sent before (same forms as --since)", show_default=False)
    ] = None,
    unread: Annotated[
        bool, typer.Option("--unread", help="only documents not acknowledged")
    ] = False,
    patient: Annotated[
        str | None,
        typer.Option(help="only this patient's documents (SYSTEM|VALUE)", show_default=False),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="at most this many")] = 50,
    *,
    output: Output,
    via: Via,
) -> None:
    """List the documents addressed to the practitioner, newest first (metadata only).

    Example: medrelay inbox --as org/clinique-b/system/ehr -p dr-b --unread --since 7d
    """
    request = xpb.ListInboxRequest(practitioner_id=practitioner, unread_only=unread)
    if type_ is not None:
        request.type.CopyFrom(inputs.document_type(type_))
    if since is not None:
        request.sent_after.FromDatetime(inputs.moment(since, "--since"))
    if until is not None:
        request.sent_before.FromDatetime(inputs.moment(until, "--until"))
    if patient is not None:
        request.patient.CopyFrom(inputs.patient(patient))
    with via.session(
        "exchange", practitioner=practitioner, action="inbox", options=_DOCUMENT_FIELDS
    ) as conn:
        documents: list[xpb.Document] = conn.list_all(
            conn.exchange().ListInbox, request, "documents", limit=limit
        )
    if output.json:
        for document in documents:
            output.emit(message_dict(document))
        return
    if not documents:
        output.say("no documents")
        return
    table = Table(title=f"Inbox of {practitioner}", title_justify="left")
    table.add_column("sent", no_wrap=True)
    table.add_column("document", no_wrap=True)
    table.add_column("from")
    table.add_column("type")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for document in documents:
        head = document.header
        states = sorted({_STATES.get(d.state, "?") for d in document.deliveries})
        state = "recalled" if document.recalled else ", ".join(states)
        table.add_row(
            when(document.create_time, seconds=False),
            document.id,
            f"{head.practitioner_id} ({document.sender_organization_id})",
            (head.type.display or head.type.code) + (" (de-identified)" if head.deidentify else ""),
            size(document.size_bytes),
            state,
        )
    output.table(table)


def fetch(
    document_id: DocumentId,
    practitioner: PractitionerOption,
    output_path: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="where to save it: a file, or a folder (named <document id>.<ext>; "
            "default: the current folder)",
            show_default=False,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing file")] = False,
    purpose: Annotated[
        str, typer.Option(help="HL7 v3 PurposeOfUse; ETREAT (emergency) needs --justification")
    ] = "TREAT",
    justification: Annotated[
        str, typer.Option(help="why an emergency access is needed (break-the-glass)")
    ] = "",
    progress: ProgressOption = None,
    *,
    output: Output,
    via: Via,
) -> None:
    """Save a document to a file, its SHA-256 and the sender's signature verified.

    Nothing is left under the name asked for unless every check passed.
    Example: medrelay fetch <id> --as org/clinique-b/system/ehr -p dr-b -o scan.dcm
    """
    with (
        via.session(
            "exchange", practitioner=practitioner, action="fetch", options=_DOCUMENT_FIELDS
        ) as conn,
        _progress_or_none(output, progress) as bar,
    ):
        # The bar appears once the service has said yes (the document's metadata arrives
        # after authorisation and consent), so a refusal shows no bar at all.
        moving: list[OnProgress] = []

        def started(document: xpb.Document) -> None:
            step = _advancer(bar, f"document {document.id[:8]}", document.size_bytes)
            if step is not None:
                moving.append(step)

        def advance(count: int) -> None:
            for step in moving:
                step(count)

        fetched = fetch_to_file(
            conn.exchange(),
            document_id,
            practitioner,
            output_path,
            timeout=via.timeout,
            purpose=inputs.code(purpose, "--purpose"),
            justification=justification,
            overwrite=force,
            on_start=started,
            on_progress=advance,
        )
    document = fetched.document
    head = document.header
    if output.json:
        output.emit(
            {
                "document_id": document.id,
                "file": str(fetched.path),
                "size_bytes": fetched.size,
                "sha256": fetched.sha256,
                "sha256_verified": True,
                "signature_valid": fetched.signature_valid,
                "seconds": round(fetched.seconds, 3),
                "document": message_dict(document),
            }
        )
        return
    output.say(
        f"saved {size(fetched.size)} to {shown_path(fetched.path)} in {fetched.seconds:.1f} s"
    )
    output.say(
        "  verified: the content matches the SHA-256 recorded at sending; the signature of "
        f"{document.sender_organization_id} is valid"
    )
    output.say(f"  sha-256 {fetched.sha256}")
    output.say(
        f"  from {head.practitioner_id} at {document.sender_organization_id}, "
        f"{when(document.create_time)}; {head.type.display or head.type.code}; "
        f"{head.content_type}"
    )
    output.say(f"  patient: {head.patient.system}|{head.patient.value}")
    if head.title:
        output.say(f"  title: {head.title}")
    if head.note:
        output.say(f"  note: {head.note}")
    for forward in document.forwards:
        line = f"  forwarded by {forward.practitioner_id} at {forward.organization_id}"
        output.say(line + (f": {forward.note}" if forward.note else ""))


def ack(
    document_id: DocumentId,
    practitioner: PractitionerOption,
    *,
    output: Output,
    via: Via,
) -> None:
    """Acknowledge a document (a read receipt for the sender).

    Example: medrelay ack <id> --as org/clinique-b/system/ehr -p dr-b
    """
    with via.session(
        "exchange", practitioner=practitioner, action="ack", options=_DOCUMENT_FIELDS
    ) as conn:
        document = conn.exchange().AcknowledgeDocument(
            xpb.AcknowledgeDocumentRequest(document_id=document_id, practitioner_id=practitioner),
            timeout=conn.timeout,
        )
    output.result(
        document, f"{practitioner} acknowledged document {document.id}; the sender sees it read"
    )


def forward(
    document_id: DocumentId,
    practitioner: PractitionerOption,
    to: ToOption,
    note: Annotated[str, typer.Option(help="a note to the new recipients (encrypted)")] = "",
    *,
    output: Output,
    via: Via,
) -> None:
    """Forward a document you received to more colleagues (consent is checked for each).

    Example: medrelay forward <id> --as org/clinique-b/system/ehr -p dr-b --to dr-c
    """
    recipients = [inputs.recipient(text) for text in to]
    with via.session(
        "exchange",
        practitioner=practitioner,
        recipients=to,
        action="forward",
        options=_DOCUMENT_FIELDS,
    ) as conn:
        document = conn.exchange().ForwardDocument(
            xpb.ForwardDocumentRequest(
                document_id=document_id,
                practitioner_id=practitioner,
                recipients=recipients,
                note=note,
            ),
            timeout=conn.timeout,
        )
    output.result(document, f"forwarded document {document.id} to {', '.join(to)}")


def recall(
    document_id: DocumentId,
    practitioner: PractitionerOption,
    reason: Annotated[
        str,
        typer.Option(
            help="wrong-patient, wrong-recipient, entered-in-error, superseded or other",
            show_default=False,
        ),
    ],
    *,
    output: Output,
    via: Via,
) -> None:
    """Recall a document you sent: every recipient's key is destroyed, no copy stays readable.

    Example: medrelay recall <id> --as org/hopital-a/system/ehr -p dr-a --reason wrong-patient
    """
    code = inputs.recall_reason(reason)
    with via.session(
        "exchange", practitioner=practitioner, action="recall", options=_DOCUMENT_FIELDS
    ) as conn:
        document = conn.exchange().RecallDocument(
            xpb.RecallDocumentRequest(
                document_id=document_id, practitioner_id=practitioner, reason=code
            ),
            timeout=conn.timeout,
        )
    output.result(
        document,
        f"recalled document {document.id} ({code.lower().replace('_', ' ')}): every "
        "recipient's key is destroyed",
    )


def status(
    document_id: DocumentId,
    practitioner: PractitionerOption,
    *,
    output: Output,
    via: Via,
) -> None:
    """Where a document stands: each recipient's delivery (new, opened, read, revoked).

    The sender sees every recipient and forward; a recipient sees their own.

    Example: medrelay status <id> --as org/hopital-a/system/ehr -p dr-a
    """
    with via.session(
        "exchange", practitioner=practitioner, action="status", options=_DOCUMENT_FIELDS
    ) as conn:
        document = conn.exchange().GetDocument(
            xpb.GetDocumentRequest(document_id=document_id, practitioner_id=practitioner),
            timeout=conn.timeout,
        )
    if output.json:
        output.emit(message_dict(document))
        return
    head = document.header
    flags = []
    if document.recalled:
        flags.append(f"recalled ({document.recall_reason.lower().replace('_', ' ')})")
    if document.expired:
        flags.append("expired")
    if head.deidentify:
        flags.append("de-identified copy")
    output.say(
        f"document {document.id}: {head.type.display or head.type.code}, "
        f"{size(document.size_bytes)}, sent {when(document.create_time)} by "
        f"{head.practitioner_id} at {document.sender_organization_id}"
        + (f"; {', '.join(flags)}" if flags else "")
    )
    table = Table()
    table.add_column("recipient")
    table.add_column("organisation")
    table.add_column("state", no_wrap=True)
    table.add_column("since", no_wrap=True)
    table.add_column("through")
    for delivery in document.deliveries:
        through = (
            f"forward by {delivery.forwarded_by_practitioner_id}"
            if delivery.forwarded_by_practitioner_id
            else (f"care team {delivery.care_team_id}" if delivery.care_team_id else "")
        )
        table.add_row(
            delivery.practitioner_id or "every member",
            delivery.organization_id,
            _STATES.get(delivery.state, "?"),
            when(delivery.update_time),
            through,
        )
    output.table(table)
