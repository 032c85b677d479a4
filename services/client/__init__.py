"""The `medrelay` client commands: the gRPC API at a terminal, for an EHR integrator or an
administrator.

`send`, `inbox`, `fetch`, `ack`, `forward`, `recall`, `status` (documents.py), `consent
record|revoke|show` (consent.py), `audit report` (audit.py), `directory ...` (directory.py).
Each is registered by options.client_command, which adds the options every command shares
(--json, the connection) and runs it inside render.boundary.
connection.py knows where the services are and which certificate to present; failures.py
turns a refusal into one line that says what to do; render.py prints tables, progress and
JSON; transfer.py streams files in and out without printing anything, for reuse.
"""

from __future__ import annotations

import typer

from . import audit, consent, directory, documents


def register(app: typer.Typer, audit_app: typer.Typer) -> None:
    """Add the client commands to the `medrelay` app and its existing `audit` group."""
    documents.register(app)
    app.add_typer(consent.app, name="consent")
    app.add_typer(directory.app, name="directory")
    audit.register(audit_app)
